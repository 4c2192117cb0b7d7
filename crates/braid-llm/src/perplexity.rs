//! Perplexity of a token sequence: `exp(mean NLL)` of every token given the ones before
//! it. Sequences longer than `window` are cut into consecutive windows scored
//! independently (the first token of each window is context only), as llama.cpp's
//! `perplexity` tool does; each window runs through the KV cache in slices of `slice`
//! tokens so the logits held at once stay small.

use braid_core::{Error, Result};
use candle_core::{DType, Device, Tensor, D};
use serde::{Deserialize, Serialize};

use crate::{DecodeCache, LanguageModel};

/// Tokens scored, their mean negative log-likelihood (nats) and the perplexity.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Perplexity {
    /// Tokens predicted (scored).
    pub tokens: usize,
    /// Mean negative log-likelihood per token, in nats.
    pub nll: f64,
    /// `exp(nll)`.
    pub ppl: f64,
}

/// Sum of `-log p(target)` over rows. logits: [n, vocab]; targets: n ids -> f64
fn nll_sum(logits: &Tensor, targets: &[u32]) -> Result<f64> {
    let logp = candle_nn::ops::log_softmax(&logits.to_dtype(DType::F32)?, D::Minus1)?;
    let idx = Tensor::new(targets, logits.device())?.unsqueeze(1)?;
    let picked = logp.gather(&idx, 1)?.squeeze(1)?.to_dtype(DType::F64)?;
    Ok(-picked.sum_all()?.to_scalar::<f64>()?)
}

/// NLL sum and count of one window (its tokens 1.. are scored).
fn window_nll<M: LanguageModel + ?Sized>(
    model: &M,
    ids: &[u32],
    slice: usize,
    device: &Device,
) -> Result<(f64, usize)> {
    let mut cache = DecodeCache::default();
    let mut total = 0.0;
    let inputs = &ids[..ids.len() - 1];
    for (i, chunk) in inputs.chunks(slice.max(1)).enumerate() {
        let x = Tensor::new(chunk, device)?.unsqueeze(0)?;
        let logits = model
            .forward_embeds(&model.embed_tokens(&x)?, None, Some(&mut cache))?
            .logits
            .squeeze(0)?;
        let start = i * slice.max(1) + 1;
        total += nll_sum(&logits, &ids[start..start + chunk.len()])?;
    }
    Ok((total, inputs.len()))
}

/// Perplexity of `ids` under `model`.
pub fn perplexity<M: LanguageModel + ?Sized>(
    model: &M,
    ids: &[u32],
    window: usize,
    slice: usize,
    device: &Device,
) -> Result<Perplexity> {
    if window < 2 {
        // One token has nothing to predict: the window was silently raised to 2 before.
        return Err(Error::Invalid(format!(
            "perplexity window of {window} tokens: it needs at least 2 (--window)"
        )));
    }
    let window = window.min(model.max_positions()).max(2);
    let (mut sum, mut count) = (0.0, 0);
    for w in ids.chunks(window).filter(|w| w.len() >= 2) {
        let (s, n) = window_nll(model, w, slice, device)?;
        sum += s;
        count += n;
    }
    if count == 0 {
        return Err(Error::Invalid(format!(
            "perplexity needs at least 2 tokens, got {}",
            ids.len()
        )));
    }
    let nll = sum / count as f64;
    Ok(Perplexity { tokens: count, nll, ppl: nll.exp() })
}
