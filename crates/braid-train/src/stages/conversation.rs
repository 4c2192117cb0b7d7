//! The `align` and `instruct` stages as one [`Task`]: next-token cross-entropy of a
//! [`Pipeline`] on prompts whose placeholders are filled by modality inputs, counted only
//! where the label is not -100 (LLaVA's `IGNORE_INDEX`: prompt, modality tokens and user
//! turns are masked; captions or assistant turns are learnt). Which variables train
//! follows the stage: `align` the input projectors, `instruct` the projectors and the
//! LLM's LoRA (LLaVA `train.py`, `tune_mm_mlp_adapter` then LoRA fine-tuning).

use std::collections::BTreeMap;

use braid_core::{Error, Result};
use braid_nn::cross_entropy;
use braid_pipeline::{Pipeline, Sample};
use candle_core::{Tensor, Var};

use crate::{Component, Stage, Task};

/// Produces sample `i` (built lazily, so images are decoded only when used).
pub type Samples<'a> = Box<dyn Fn(usize) -> Result<Sample> + 'a>;

/// Caption or conversation training of a multimodal pipeline.
pub struct ConversationTask<'a> {
    /// The model.
    pub pipeline: &'a Pipeline,
    /// `Align` or `Instruct`.
    pub stage: Stage,
    /// Components trained on top of the stage's own (e.g. `[Encoder]`: fine-tune the
    /// image encoder in `instruct`, as LLaVA-NeXT and Qwen-VL unfreeze the vision tower).
    pub extra: Vec<Component>,
    /// Sample by index.
    pub samples: Samples<'a>,
    /// How many samples.
    pub len: usize,
    /// Held-out evaluation.
    pub evaluate: Option<crate::stages::Evaluate<'a>>,
}

/// The pipeline's variable maps that `stage` trains, by component: `projector.*` for the
/// input projectors, `lora` for the LLM's LoRA, `encoder.*`, `llm`; `extra` components
/// train besides the stage's own.
pub fn stage_vars(pipeline: &Pipeline, stage: Stage, extra: &[Component]) -> Result<Vec<(String, Var)>> {
    let component = |name: &str| match name {
        n if n.starts_with("projector.") => Component::InputProjector,
        n if n.starts_with("encoder.") => Component::Encoder,
        "lora" => Component::LlmLora,
        _ => Component::Llm,
    };
    let mut vars = Vec::new();
    let mut needs: Vec<Component> = stage.trainable().to_vec();
    needs.extend(extra.iter().filter(|c| !stage.trainable().contains(c)));
    for need in &needs {
        let maps: Vec<_> = pipeline.var_maps().into_iter().filter(|(n, _)| component(n) == *need).collect();
        if maps.is_empty() {
            return Err(Error::config(format!("model.{need:?}").to_lowercase(), format!("stage {stage:?} trains the {need:?} component, which this pipeline lacks")));
        }
        for (prefix, vm) in maps {
            vars.extend(crate::optim::prefixed_vars(&prefix, vm)?);
        }
    }
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(vars)
}

impl ConversationTask<'_> {
    /// Sum of the token losses of one sample and how many tokens count.
    fn sample_loss(&self, s: &Sample) -> Result<(Tensor, usize)> {
        let (embeds, labels) = self.pipeline.embed_labelled(&s.ids, Some(&s.labels), &s.inputs)?;
        // Position t predicts label t + 1.
        let targets: Vec<i64> = labels[1..].to_vec();
        let count = targets.iter().filter(|&&l| l != -100).count();
        if count == 0 {
            return Err(Error::Invalid("a training sample has no learnt token (every label is -100)".into()));
        }
        // Logits only where a label is learnt (the answers of a conversation are a tenth
        // of its tokens).
        let (rows, learnt): (Vec<u32>, Vec<i64>) =
            targets.iter().enumerate().filter(|(_, &l)| l != -100).map(|(i, &l)| (i as u32, l)).unzip();
        let logits = self.pipeline.llm()?.logits_at(&embeds, &rows)?;
        let t = Tensor::new(learnt.as_slice(), logits.device())?;
        Ok(((cross_entropy(&logits, &t, None)? * count as f64)?, count))
    }
}

impl Task for ConversationTask<'_> {
    fn train_len(&self) -> usize {
        self.len
    }

    /// Mean over every learnt token of the batch (as one padded batch would give).
    fn loss(&self, indices: &[usize], _step: usize) -> Result<Tensor> {
        let mut total: Option<Tensor> = None;
        let mut count = 0;
        for &i in indices {
            let (sum, c) = self.sample_loss(&(self.samples)(i)?)?;
            total = Some(match total {
                Some(t) => (t + sum)?,
                None => sum,
            });
            count += c;
        }
        let total = total.ok_or_else(|| Error::Invalid("empty batch".into()))?;
        Ok((total / count as f64)?)
    }

    fn evaluate(&self) -> Result<BTreeMap<String, f64>> {
        match &self.evaluate {
            Some(f) => f(),
            None => Ok(BTreeMap::new()),
        }
    }

    fn trainable(&self) -> Result<Vec<(String, Var)>> {
        stage_vars(self.pipeline, self.stage, &self.extra)
    }
}
