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

use braid_core::Result;
use braid_llm::Llama;
use braid_nn::log_softmax;
use candle_core::{DType, Tensor, D};

use super::conversation::Padded;

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
