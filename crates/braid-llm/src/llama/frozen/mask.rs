//! The additive attention bias of a frozen forward: causal over cached + new positions,
//! key padding from a 1/0 mask, rows repeated for each query head of a KV group. Built
//! once per forward and shared by every layer. Masked scores get a large finite negative
//! (not -inf) so that a fully masked row (a left-padding query) stays finite.

use braid_core::{Error, Result};
use candle_core::{DType, Device, Tensor};

const NEG: f32 = -1e30;

/// None when nothing needs masking (one new position, no padding).
///
/// padding: [batch, cached + seq] of 1/0 -> [batch or 1, 1, group * seq, cached + seq] f32
pub(crate) fn attention_bias(
    seq: usize,
    cached: usize,
    group: usize,
    padding: Option<&Tensor>,
    device: &Device,
) -> Result<Option<Tensor>> {
    let total = cached + seq;
    if seq == 1 && padding.is_none() {
        return Ok(None);
    }
    let causal: Vec<f32> = (0..group * seq)
        .flat_map(|row| {
            let i = row % seq + cached;
            (0..total).map(move |j| if j <= i { 0.0 } else { NEG })
        })
        .collect();
    let causal = Tensor::from_vec(causal, (1, 1, group * seq, total), device)?;
    let Some(pad) = padding else { return Ok(Some(causal)) };
    let (b, len) = pad.dims2()?;
    if len != total {
        return Err(Error::shape("attention padding mask", &[b, total], pad.dims()));
    }
    let keep = pad.to_dtype(DType::F32)?.ne(0f32)?.to_dtype(DType::F32)?;
    let pad_bias = ((1.0 - keep)? * f64::from(NEG))?.reshape((b, 1, 1, total))?;
    Ok(Some(causal.broadcast_add(&pad_bias)?.maximum(f64::from(NEG))?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causal_rows_repeat_per_group_member() -> Result<()> {
        let m = attention_bias(2, 1, 2, None, &Device::Cpu)?
            .ok_or_else(|| Error::Invalid("none".into()))?;
        let rows = m.squeeze(0)?.squeeze(0)?.to_vec2::<f32>()?;
        assert_eq!(rows.len(), 4);
        assert_eq!(rows[0], vec![0.0, 0.0, NEG]);
        assert_eq!(rows[1], vec![0.0, 0.0, 0.0]);
        assert_eq!(rows[2], rows[0]);
        assert!(attention_bias(1, 5, 3, None, &Device::Cpu)?.is_none());
        Ok(())
    }
}
