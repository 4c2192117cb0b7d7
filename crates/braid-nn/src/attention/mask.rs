//! Which keys each query may see, as a u8 "keep" mask for `where_cond` (no additive -inf,
//! so a fully masked row gives a uniform distribution instead of NaN).

use braid_core::{Error, Result};
use candle_core::{DType, Device, Tensor};

/// Keep-mask for causal attention when the queries are the last `q_len` of `k_len`
/// positions: query i sees key j iff `j <= i + (k_len - q_len)`.
///
/// -> [q_len, k_len] u8
pub fn causal(q_len: usize, k_len: usize, device: &Device) -> Result<Tensor> {
    let offset = k_len.saturating_sub(q_len);
    let keep: Vec<u8> =
        (0..q_len).flat_map(|i| (0..k_len).map(move |j| u8::from(j <= i + offset))).collect();
    Ok(Tensor::from_vec(keep, (q_len, k_len), device)?)
}

/// Combines an optional causal mask and an optional key padding mask into one keep-mask
/// broadcastable over heads, or `None` when nothing is masked.
///
/// padding: [batch, k_len] of 1 (real) / 0 (padding), any dtype -> [batch or 1, 1, q_len, k_len] u8
pub fn keep_mask(
    is_causal: bool,
    padding: Option<&Tensor>,
    q_len: usize,
    k_len: usize,
    device: &Device,
) -> Result<Option<Tensor>> {
    let causal = if is_causal {
        Some(causal(q_len, k_len, device)?.reshape((1, 1, q_len, k_len))?)
    } else {
        None
    };
    let padding = match padding {
        None => None,
        Some(p) => {
            let (b, len) = p.dims2()?;
            if len != k_len {
                return Err(Error::shape("attention padding mask", &[b, k_len], p.dims()));
            }
            Some(p.ne(0.0)?.reshape((b, 1, 1, k_len))?)
        }
    };
    Ok(match (causal, padding) {
        (Some(c), Some(p)) => Some(c.broadcast_mul(&p)?),
        (Some(c), None) => Some(c),
        (None, Some(p)) => Some(p),
        (None, None) => None,
    })
}

/// The same masks as [`keep_mask`] in the form the fused attention kernel takes them.
///
/// padding: [batch, k_len] of 1 (real) / 0 (padding), any dtype
pub fn softmax_mask(
    is_causal: bool,
    padding: Option<&Tensor>,
    q_len: usize,
    k_len: usize,
) -> Result<crate::fused::AttentionMask> {
    let padding = match padding {
        None => None,
        Some(p) => {
            let (b, len) = p.dims2()?;
            if len != k_len {
                return Err(Error::shape("attention padding mask", &[b, k_len], p.dims()));
            }
            let keep = p.ne(0.0)?.flatten_all()?.to_vec1::<u8>()?;
            Some(std::sync::Arc::new(keep))
        }
    };
    let causal_offset = is_causal.then(|| k_len.saturating_sub(q_len));
    Ok(crate::fused::AttentionMask { causal_offset, padding })
}

/// Replaces scores where `keep` is 0 by the dtype's most negative finite value.
///
/// scores: [batch, heads, q_len, k_len]; keep: broadcastable u8 -> same shape as scores
pub fn apply(scores: &Tensor, keep: &Tensor) -> Result<Tensor> {
    let fill = match scores.dtype() {
        DType::F16 => -65504.0,
        DType::BF16 | DType::F32 => f32::MIN as f64,
        _ => f64::MIN,
    };
    let keep = keep.broadcast_as(scores.shape())?;
    let fill = Tensor::full(fill, (), scores.device())?
        .to_dtype(scores.dtype())?
        .broadcast_as(scores.shape())?;
    Ok(keep.where_cond(scores, &fill)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causal_with_offset() -> Result<()> {
        let m = causal(2, 4, &Device::Cpu)?.to_vec2::<u8>()?;
        assert_eq!(m, vec![vec![1, 1, 1, 0], vec![1, 1, 1, 1]]);
        Ok(())
    }
}
