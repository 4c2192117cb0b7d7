//! Rotary position embedding (Su et al. 2021, "RoFormer"), in the LLaMA / Hugging Face
//! convention: non-interleaved halves, `x * cos + rotate_half(x) * sin`
//! (reference: `transformers.models.llama.modeling_llama.apply_rotary_pos_emb`).

use braid_core::{Error, Result};
use candle_core::{DType, Device, Tensor, D};

/// Precomputed cos/sin tables `[max_pos, head_dim]`, applied with differentiable ops
/// (candle's fused rotary kernels have no backward pass).
#[derive(Debug, Clone)]
pub struct RotaryEmbedding {
    cos: Tensor,
    sin: Tensor,
}

impl RotaryEmbedding {
    /// Tables for positions `0..max_pos` with frequencies `base^(-2i/head_dim)`
    /// (`base` is `rope_theta`: 10000 for LLaMA 2, 500000 for LLaMA 3).
    pub fn new(
        head_dim: usize,
        max_pos: usize,
        base: f64,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        if head_dim % 2 != 0 {
            return Err(Error::config(
                "head_dim",
                format!("RoPE needs an even head_dim, got {head_dim}"),
            ));
        }
        let inv_freq: Vec<f32> = (0..head_dim / 2)
            .map(|i| (1.0 / base.powf(2.0 * i as f64 / head_dim as f64)) as f32)
            .collect();
        let inv_freq = Tensor::from_vec(inv_freq, (1, head_dim / 2), device)?;
        let pos =
            Tensor::arange(0u32, max_pos as u32, device)?.to_dtype(DType::F32)?.unsqueeze(1)?;
        let freqs = pos.broadcast_mul(&inv_freq)?;
        let emb = Tensor::cat(&[&freqs, &freqs], 1)?;
        Ok(Self { cos: emb.cos()?.to_dtype(dtype)?, sin: emb.sin()?.to_dtype(dtype)? })
    }

    /// Rotates queries or keys whose first position is `offset` (the KV-cache length).
    ///
    /// x: [batch, heads, seq, head_dim] -> [batch, heads, seq, head_dim]
    pub fn apply(&self, x: &Tensor, offset: usize) -> Result<Tensor> {
        let (_, _, seq, _) = x.dims4()?;
        let max_pos = self.cos.dim(0)?;
        if offset + seq > max_pos {
            return Err(Error::Invalid(format!(
                "RoPE: position {} beyond max_pos {max_pos}",
                offset + seq
            )));
        }
        let cos = self.cos.narrow(0, offset, seq)?.to_dtype(x.dtype())?;
        let sin = self.sin.narrow(0, offset, seq)?.to_dtype(x.dtype())?;
        if crate::fused::applies(&[x]) {
            return Ok(crate::fused::rope(x, &cos, &sin)?);
        }
        Ok((x.broadcast_mul(&cos)? + rotate_half(x)?.broadcast_mul(&sin)?)?)
    }
}

/// `[x1, x2] -> [-x2, x1]` over the last dimension.
fn rotate_half(x: &Tensor) -> Result<Tensor> {
    let half = x.dim(D::Minus1)? / 2;
    let x1 = x.narrow(D::Minus1, 0, half)?;
    let x2 = x.narrow(D::Minus1, half, half)?;
    Ok(Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;
    use crate::gradcheck::finite_difference_check;

    #[test]
    fn matches_pytorch() -> Result<()> {
        let f = fixtures::load("rope")?;
        let rope = RotaryEmbedding::new(8, 16, 10000.0, DType::F32, &Device::Cpu)?;
        fixtures::check(&rope.apply(&f.get("x")?, 0)?, &f.get("y")?, "rope")?;
        fixtures::check(&rope.apply(&f.get("x")?, 3)?, &f.get("y_offset3")?, "rope offset")?;
        let rope = RotaryEmbedding::new(8, 16, 500000.0, DType::F32, &Device::Cpu)?;
        fixtures::check(&rope.apply(&f.get("x")?, 0)?, &f.get("y_base5e5")?, "rope base")?;
        f.assert_all_used()
    }

    #[test]
    fn gradients_match_finite_differences() -> Result<()> {
        let rope = RotaryEmbedding::new(4, 8, 10000.0, DType::F64, &Device::Cpu)?;
        let x = Tensor::randn(0f64, 1., (1, 2, 3, 4), &Device::Cpu)?;
        finite_difference_check(|x| rope.apply(x, 2), &x, 1e-6, 1e-6)
    }
}
