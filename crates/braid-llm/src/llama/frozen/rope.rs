//! Rotary tables for candle's fused rotary kernels: rotate-half over whole heads (the
//! Hugging Face LLaMA convention) or adjacent pairs over the first part of each head
//! (GLM, ggml's "normal" mode); Su et al. 2021. The layout and its frequencies are
//! `braid_nn::RopeLayout`'s, shared with the trainable body. Positions past the table are
//! an error that names the context length.

use braid_core::{Error, Result};
use braid_nn::RopeLayout;
use candle_core::{DType, Device, Tensor, D};

/// cos/sin tables `[max_pos, pairs]`.
#[derive(Debug, Clone)]
pub(crate) struct Rope {
    cos: Tensor,
    sin: Tensor,
    layout: RopeLayout,
}

impl Rope {
    /// The layout's frequencies for positions `0..max_pos`.
    pub(crate) fn new(
        layout: RopeLayout,
        max_pos: usize,
        base: f64,
        device: &Device,
    ) -> Result<Self> {
        layout.validate("rope")?;
        let n = layout.pairs();
        let inv = Tensor::from_vec(layout.inv_freq(base), (1, n), device)?;
        let pos =
            Tensor::arange(0u32, max_pos as u32, device)?.to_dtype(DType::F32)?.unsqueeze(1)?;
        let freqs = pos.broadcast_mul(&inv)?;
        Ok(Self { cos: freqs.cos()?, sin: freqs.sin()?, layout })
    }

    /// Longest sequence covered.
    pub(crate) fn max_pos(&self) -> usize {
        self.cos.dims()[0]
    }

    /// x: [batch, heads, seq, head_dim] at positions offset.. -> same shape
    pub(crate) fn apply(&self, x: &Tensor, offset: usize) -> Result<Tensor> {
        let (_, _, seq, d) = x.dims4()?;
        if offset + seq > self.max_pos() {
            return Err(Error::Invalid(format!(
                "sequence of {} tokens exceeds the model's context of {} tokens",
                offset + seq,
                self.max_pos()
            )));
        }
        let cos = self.cos.narrow(0, offset, seq)?;
        let sin = self.sin.narrow(0, offset, seq)?;
        if !self.layout.interleaved {
            return Ok(candle_nn::rotary_emb::rope(x, &cos, &sin)?);
        }
        let r = self.layout.rotated();
        if r == d {
            return Ok(candle_nn::rotary_emb::rope_i(x, &cos, &sin)?);
        }
        let rot =
            candle_nn::rotary_emb::rope_i(&x.narrow(D::Minus1, 0, r)?.contiguous()?, &cos, &sin)?;
        Ok(Tensor::cat(&[&rot, &x.narrow(D::Minus1, r, d - r)?], D::Minus1)?)
    }
}
