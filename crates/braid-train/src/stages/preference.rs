//! Direct Preference Optimization (Rafailov et al. 2023, "Direct Preference Optimization:
//! Your Language Model is Secretly a Reward Model", eq. 7), as TRL's `DPOTrainer` computes
//! its default sigmoid loss:
//!
//! ```text
//! loss = -log σ(β ((log π(y_w|x) - log π_ref(y_w|x)) - (log π(y_l|x) - log π_ref(y_l|x))))
//! ```
//!
//! with `log π(y|x)` the sum of the log-probabilities of the answer's tokens (the learnt
//! labels of a sequence). The reference model is the policy's starting point; its
//! log-probabilities are computed once, before training, so that one model is in memory.

use std::collections::BTreeMap;

use braid_core::Result;
use braid_llm::Llama;
use braid_nn::log_softmax;
use braid_pipeline::{Pipeline, Sample};
use candle_core::{DType, Tensor, Var, D};

use super::conversation::Padded;
use crate::{Stage, Task};

/// Sum of the log-probabilities of the learnt labels of each sequence (spliced embeddings
/// [1, t_i, d] and one label per position, -100 where nothing is learnt), run as one padded
/// batch. -> [batch]
pub fn sequence_logps(llm: &Llama, sequences: Vec<(Tensor, Vec<i64>)>) -> Result<Tensor> {
    let n = sequences.len();
    let batch = Padded::new(sequences)?;
    let dev = batch.embeds.device().clone();
    let logits = llm.logits_at(&batch.embeds, &batch.rows)?;
    let logp = log_softmax(&logits.to_dtype(DType::F32)?, D::Minus1)?;
    let ids: Vec<u32> = batch.targets.iter().map(|&t| t as u32).collect();
    let picked = logp.gather(&Tensor::from_vec(ids, (batch.targets.len(), 1), &dev)?, 1)?;
    // [batch, tokens] one-hot of each token's sequence, times the picked log-probs.
    let mut owner = vec![0f32; n * batch.targets.len()];
    for (j, &k) in batch.owners.iter().enumerate() {
        owner[k * batch.targets.len() + j] = 1.0;
    }
    let owner = Tensor::from_vec(owner, (n, batch.targets.len()), &dev)?;
    Ok(owner.matmul(&picked)?.squeeze(1)?)
}

/// The DPO loss (mean over the batch) from the policy's and the reference's sequence
/// log-probabilities of the chosen and rejected answers, each [batch]. -> (loss [], the
/// implicit reward margins `β (Δchosen - Δrejected)` [batch])
pub fn dpo_loss(
    policy_chosen: &Tensor,
    policy_rejected: &Tensor,
    reference_chosen: &Tensor,
    reference_rejected: &Tensor,
    beta: f64,
) -> Result<(Tensor, Tensor)> {
    let chosen = (policy_chosen - reference_chosen)?;
    let rejected = (policy_rejected - reference_rejected)?;
    let margin = ((chosen - rejected)? * beta)?;
    // -log σ(z) = log(e^0 + e^z) - z, the log-sum-exp shifted by the detached max(0, z):
    // stable for any z, and without the kinks of max/abs, whose one-sided derivatives at
    // z = 0 (exactly where every DPO run starts: the policy is the reference) are wrong.
    let shift = margin.relu()?.detach();
    let lse = (&shift + (shift.neg()?.exp()? + (&margin - &shift)?.exp()?)?.log()?)?;
    Ok(((lse - &margin)?.mean_all()?, margin))
}

/// Produces pair `i`: the sample with the chosen answer and the same with the rejected one.
pub type Pairs<'a> = Box<dyn Fn(usize) -> Result<(Sample, Sample)> + 'a>;

/// DPO on a multimodal pipeline: the input projectors and the LLM's LoRA train (as in
/// `instruct`), the reference log-probabilities are those of the model before training.
pub struct PreferenceTask<'a> {
    /// The policy.
    pub pipeline: &'a Pipeline,
    /// Pair by index.
    pub pairs: Pairs<'a>,
    /// The reference's (chosen, rejected) log-probabilities of every pair
    /// ([`reference_logps`]).
    pub reference: Vec<(f32, f32)>,
    /// DPO's β.
    pub beta: f64,
    /// Held-out evaluation.
    pub evaluate: Option<super::Evaluate<'a>>,
}

/// The (chosen, rejected) log-probabilities of every pair under the pipeline as it is,
/// computed before training: the reference model of DPO. `progress` hears each pair.
pub fn reference_logps(
    pipeline: &Pipeline,
    pairs: &Pairs,
    len: usize,
    progress: &mut dyn FnMut(usize),
) -> Result<Vec<(f32, f32)>> {
    let mut out = Vec::with_capacity(len);
    for i in 0..len {
        let v = pair_logps(pipeline, pairs, &[i])?.detach().to_vec1::<f32>()?;
        out.push((v[0], v[1]));
        progress(i + 1);
    }
    Ok(out)
}

/// Log-probabilities of the chosen answers of `indices`, then of their rejected ones, in
/// one padded batch. -> [2 * indices]
fn pair_logps(pipeline: &Pipeline, pairs: &Pairs, indices: &[usize]) -> Result<Tensor> {
    let mut chosen = Vec::with_capacity(indices.len());
    let mut rejected = Vec::with_capacity(indices.len());
    for &i in indices {
        let (c, r) = pairs(i)?;
        chosen.push(pipeline.embed_labelled(&c.ids, Some(&c.labels), &c.inputs)?);
        rejected.push(pipeline.embed_labelled(&r.ids, Some(&r.labels), &r.inputs)?);
    }
    chosen.extend(rejected);
    sequence_logps(pipeline.llm()?, chosen)
}

impl Task for PreferenceTask<'_> {
    fn train_len(&self) -> usize {
        self.reference.len()
    }

    fn loss(&self, indices: &[usize], _step: usize) -> Result<Tensor> {
        let n = indices.len();
        let logps = pair_logps(self.pipeline, &self.pairs, indices)?;
        let dev = logps.device();
        let refs = |pick: fn(&(f32, f32)) -> f32| -> Result<Tensor> {
            let v: Vec<f32> = indices.iter().map(|&i| pick(&self.reference[i])).collect();
            Ok(Tensor::from_vec(v, n, dev)?)
        };
        let (loss, _) = dpo_loss(
            &logps.narrow(0, 0, n)?,
            &logps.narrow(0, n, n)?,
            &refs(|r| r.0)?,
            &refs(|r| r.1)?,
            self.beta,
        )?;
        Ok(loss)
    }

    fn evaluate(&self) -> Result<BTreeMap<String, f64>> {
        match &self.evaluate {
            Some(f) => f(),
            None => Ok(BTreeMap::new()),
        }
    }

    fn trainable(&self) -> Result<Vec<(String, Var)>> {
        super::stage_vars(self.pipeline, Stage::Preference, &[], &[])
    }
}
