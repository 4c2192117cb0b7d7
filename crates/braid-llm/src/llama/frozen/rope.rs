//! Rotary tables for candle's fused non-interleaved rotary kernel (the Hugging Face
//! `rotate_half` convention; Su et al. 2021). Positions past the table are an error that
//! names the context length.

use braid_core::{Error, Result};
use candle_core::{DType, Device, Tensor};

/// cos/sin tables `[max_pos, head_dim / 2]`.
#[derive(Debug, Clone)]
pub(crate) struct Rope {
    cos: Tensor,
    sin: Tensor,
}

impl Rope {
    /// Frequencies `base^(-2i/head_dim)` for positions `0..max_pos`.
    pub(crate) fn new(head_dim: usize, max_pos: usize, base: f64, device: &Device) -> Result<Self> {
        let inv: Vec<f32> = (0..head_dim / 2)
            .map(|i| (1.0 / base.powf(2.0 * i as f64 / head_dim as f64)) as f32)
            .collect();
        let inv = Tensor::from_vec(inv, (1, head_dim / 2), device)?;
        let pos =
            Tensor::arange(0u32, max_pos as u32, device)?.to_dtype(DType::F32)?.unsqueeze(1)?;
        let freqs = pos.broadcast_mul(&inv)?;
        Ok(Self { cos: freqs.cos()?, sin: freqs.sin()? })
    }

    /// Longest sequence covered.
    pub(crate) fn max_pos(&self) -> usize {
        self.cos.dims()[0]
    }

    /// x: [batch, heads, seq, head_dim] at positions offset.. -> same shape
    pub(crate) fn apply(&self, x: &Tensor, offset: usize) -> Result<Tensor> {
        let seq = x.dim(2)?;
        if offset + seq > self.max_pos() {
            return Err(Error::Invalid(format!(
                "sequence of {} tokens exceeds the model's context of {} tokens",
                offset + seq,
                self.max_pos()
            )));
        }
        let cos = self.cos.narrow(0, offset, seq)?;
        let sin = self.sin.narrow(0, offset, seq)?;
        Ok(candle_nn::rotary_emb::rope(x, &cos, &sin)?)
    }
}
