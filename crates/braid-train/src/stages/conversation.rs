//! The `align` and `instruct` stages as one [`Task`]: next-token cross-entropy of a
//! [`Pipeline`] on prompts whose placeholders are filled by modality inputs, counted only
//! where the label is not -100 (LLaVA's `IGNORE_INDEX`: prompt, modality tokens and user
//! turns are masked; captions or assistant turns are learnt). Which variables train
//! follows the stage: `align` the input projectors, `instruct` the projectors and the
//! LLM's LoRA (LLaVA `train.py`, `tune_mm_mlp_adapter` then LoRA fine-tuning).

use std::collections::BTreeMap;

use braid_core::{Error, Result};
use braid_llm::Llama;
use braid_nn::cross_entropy;
use braid_pipeline::{Pipeline, Sample, IGNORE};
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
    /// Variable maps trained besides the stage's components, by name (`encoder.imu`: a
    /// new modality's tokenizer, as OneLLM trains it with the projection module).
    pub extra_maps: Vec<String>,
    /// Sample by index.
    pub samples: Samples<'a>,
    /// How many samples.
    pub len: usize,
    /// Held-out evaluation.
    pub evaluate: Option<crate::stages::Evaluate<'a>>,
}

/// The pipeline's variable maps that `stage` trains, by component: `projector.*` for the
/// input projectors, `lora` for the LLM's LoRA, `encoder.*`, `llm`; `extra` components
/// and the maps named in `extra_maps` train besides the stage's own.
pub fn stage_vars(
    pipeline: &Pipeline,
    stage: Stage,
    extra: &[Component],
    extra_maps: &[String],
) -> Result<Vec<(String, Var)>> {
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
        let maps: Vec<_> =
            pipeline.var_maps().into_iter().filter(|(n, _)| component(n) == *need).collect();
        if maps.is_empty() {
            return Err(Error::config(
                format!("model.{need:?}").to_lowercase(),
                format!("stage {stage:?} trains the {need:?} component, which this pipeline lacks"),
            ));
        }
        for (prefix, vm) in maps {
            vars.extend(crate::optim::prefixed_vars(&prefix, vm)?);
        }
    }
    for name in extra_maps {
        let maps = pipeline.var_maps();
        let Some((prefix, vm)) = maps.iter().find(|(n, _)| n == name) else {
            return Err(Error::config(
                "model.slots",
                format!("`{name}` is to train, but this pipeline has no such variables"),
            ));
        };
        if !needs.contains(&component(prefix)) {
            vars.extend(crate::optim::prefixed_vars(prefix, vm)?);
        }
    }
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(vars)
}

/// A batch of spliced sequences padded on the right into one tensor, and the flat rows
/// (`sequence * longest + position`) whose next token is learnt, with those tokens.
pub(crate) struct Padded {
    pub(crate) embeds: Tensor,
    pub(crate) rows: Vec<u32>,
    pub(crate) targets: Vec<i64>,
    /// The sequence of each learnt token.
    pub(crate) owners: Vec<usize>,
}

impl Padded {
    /// sequences: ([1, t_i, d], t_i labels) each -> [batch, max t_i, d]
    pub(crate) fn new(sequences: Vec<(Tensor, Vec<i64>)>) -> Result<Self> {
        let longest = sequences
            .iter()
            .map(|(_, l)| l.len())
            .max()
            .ok_or_else(|| Error::Invalid("empty batch".into()))?;
        let (mut parts, mut rows, mut targets, mut owners) =
            (Vec::with_capacity(sequences.len()), Vec::new(), Vec::new(), Vec::new());
        for (k, (embeds, labels)) in sequences.into_iter().enumerate() {
            // Position t predicts label t + 1.
            let before = rows.len();
            for (t, &l) in labels.iter().enumerate().skip(1).filter(|(_, &l)| l != IGNORE) {
                rows.push((k * longest + t - 1) as u32);
                targets.push(l);
                owners.push(k);
            }
            if rows.len() == before {
                return Err(Error::Invalid(
                    "a training sample has no learnt token (every label is -100)".into(),
                ));
            }
            let (_, t, d) = embeds.dims3()?;
            parts.push(match longest - t {
                0 => embeds,
                pad => Tensor::cat(
                    &[&embeds, &Tensor::zeros((1, pad, d), embeds.dtype(), embeds.device())?],
                    1,
                )?,
            });
        }
        Ok(Self { embeds: Tensor::cat(&parts, 0)?, rows, targets, owners })
    }
}

/// Mean next-token cross-entropy over every learnt label of `sequences` (spliced
/// embeddings [1, t_i, d] and one label per position, [`IGNORE`] where nothing is learnt),
/// run as one batch padded on the right.
pub fn padded_loss(llm: &Llama, sequences: Vec<(Tensor, Vec<i64>)>) -> Result<Tensor> {
    Ok(padded_loss_counted(llm, sequences)?.0)
}

/// [`padded_loss`] and the number of learnt tokens it is the mean over.
fn padded_loss_counted(llm: &Llama, sequences: Vec<(Tensor, Vec<i64>)>) -> Result<(Tensor, usize)> {
    let batch = Padded::new(sequences)?;
    let logits = llm.logits_at(&batch.embeds, &batch.rows)?;
    let loss =
        cross_entropy(&logits, &Tensor::new(batch.targets.as_slice(), logits.device())?, None)?;
    Ok((loss, batch.targets.len()))
}

impl Task for ConversationTask<'_> {
    fn train_len(&self) -> usize {
        self.len
    }

    /// Mean over every learnt token of the batch. The batch runs as one padded sequence
    /// tensor, with logits only where a label is learnt (the answers of a conversation
    /// are a tenth of its tokens).
    fn loss(&self, indices: &[usize], step: usize) -> Result<Tensor> {
        Ok(self.weighted_loss(indices, step)?.0)
    }

    /// The mean over learnt tokens, and their number.
    fn weighted_loss(&self, indices: &[usize], _step: usize) -> Result<(Tensor, f64)> {
        let sequences = indices
            .iter()
            .map(|&i| {
                let s = (self.samples)(i)?;
                self.pipeline.embed_labelled(&s.ids, Some(&s.labels), &s.inputs)
            })
            .collect::<Result<Vec<_>>>()?;
        let (loss, tokens) = padded_loss_counted(self.pipeline.llm()?, sequences)?;
        Ok((loss, tokens as f64))
    }

    fn evaluate(&self) -> Result<BTreeMap<String, f64>> {
        match &self.evaluate {
            Some(f) => f(),
            None => Ok(BTreeMap::new()),
        }
    }

    fn trainable(&self) -> Result<Vec<(String, Var)>> {
        stage_vars(self.pipeline, self.stage, &self.extra, &self.extra_maps)
    }
}
