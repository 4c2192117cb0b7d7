//! The logit formulas of the training-free adapters, on L2-normalised features of one
//! aligned image-text space. Written from the reference scripts:
//!
//! - zero-shot CLIP and Tip-Adapter: `gaopengcuhk/Tip-Adapter`, `main.py` / `utils.py`
//!   (`clip_logits = 100 f W^T`, `cache_logits = exp(-(β - β f F^T)) L`,
//!   `tip_logits = clip_logits + α cache_logits`);
//! - TIP-X: `vishaal27/SuS-X`, `tipx.py` (`p = softmax(f W^T / T)`, the KL divergence of
//!   each test distribution from each support distribution, min-max scaled into the range
//!   of the affinities `f F^T`, negated, times `L`, weighted by γ);
//! - CapS-Adapter: `WLuLi/CapS-Adapter`, `madapter.py` (the affinity mixes image and
//!   caption keys, `(1 - δ) f F_img^T + δ f F_cap^T`, and feeds both the cache and the KL
//!   scaling).
//!
//! Two choices differ from the scripts where they have slips, and are the papers' own:
//! the class distributions are `softmax(f W^T / T)` (CapS's script softmaxes the features
//! themselves), and the KL scaling of a split uses that split's own affinities (SuS-X's
//! test pass reuses the last validation batch's). The KL matrix is computed whole, not in
//! batches of 100 that drop the remainder.

use braid_core::Result;
use candle_core::{Tensor, D};
use candle_nn::ops::softmax_last_dim;

/// Probabilities are clamped here before the logarithm of the KL divergence (a class
/// probability of exactly zero would make it infinite).
const MIN_PROB: f64 = 1e-30;

/// Zero-shot logits `scale · f W^T`. f: [n, D], text weights: [C, D] -> [n, C]
pub fn zero_shot(f: &Tensor, text: &Tensor, scale: f64) -> Result<Tensor> {
    Ok((f.matmul(&text.t()?)? * scale)?)
}

/// The affinity of each feature to each support entry, `(1 - δ) f K^T + δ f Cap^T`
/// (Tip-Adapter and TIP-X: δ = 0, no caption keys). f: [n, D], keys: [N, D] -> [n, N]
pub fn affinity(
    f: &Tensor,
    keys: &Tensor,
    captions: Option<&Tensor>,
    delta: f64,
) -> Result<Tensor> {
    let image = f.matmul(&keys.t()?)?;
    match captions {
        Some(cap) if delta != 0.0 => {
            Ok(((image * (1.0 - delta))? + (f.matmul(&cap.t()?)? * delta)?)?)
        }
        _ => Ok(image),
    }
}

/// Tip-Adapter's cache logits `exp(-β (1 - A)) L`. affinity: [n, N], values: [N, C]
pub fn cache_logits(affinity: &Tensor, values: &Tensor, beta: f64) -> Result<Tensor> {
    Ok(((affinity - 1.0)? * beta)?.exp()?.matmul(values)?)
}

/// Class distributions `softmax(f W^T / T)`. f: [n, D], text: [C, D] -> [n, C]
pub fn class_distribution(f: &Tensor, text: &Tensor, temperature: f64) -> Result<Tensor> {
    Ok(softmax_last_dim(&(f.matmul(&text.t()?)? / temperature)?)?)
}

/// `KL(p_i || q_j)` for every test distribution p_i and support distribution q_j.
/// p: [n, C], q: [N, C] -> [n, N]
pub fn kl_divergence(p: &Tensor, q: &Tensor) -> Result<Tensor> {
    let log_p = p.clamp(MIN_PROB, 1.0)?.log()?;
    let log_q = q.clamp(MIN_PROB, 1.0)?.log()?;
    let entropy_term = (p * &log_p)?.sum_keepdim(D::Minus1)?;
    Ok(entropy_term.broadcast_sub(&p.matmul(&log_q.t()?)?)?)
}

/// TIP-X's KL logits: the divergences min-max scaled into the range of `affinity`,
/// negated, times the support labels. kl, affinity: [n, N], values: [N, C] -> [n, C]
pub fn kl_logits(kl: &Tensor, affinity: &Tensor, values: &Tensor) -> Result<Tensor> {
    let (lo, hi) = (min_all(kl)?, max_all(kl)?);
    let (alo, ahi) = (min_all(affinity)?, max_all(affinity)?);
    let span = if hi > lo { hi - lo } else { 1.0 };
    let scaled = (((kl - lo)? / span)? * (ahi - alo))? + alo;
    Ok(scaled?.neg()?.matmul(values)?)
}

fn min_all(x: &Tensor) -> Result<f64> {
    Ok(f64::from(x.flatten_all()?.min(0)?.to_scalar::<f32>()?))
}

fn max_all(x: &Tensor) -> Result<f64> {
    Ok(f64::from(x.flatten_all()?.max(0)?.to_scalar::<f32>()?))
}
