//! Rotary position embedding (Su et al. 2021, "RoFormer"). Two layouts of the rotated
//! pairs: the LLaMA / Hugging Face convention (non-interleaved halves,
//! `x * cos + rotate_half(x) * sin`; reference:
//! `transformers.models.llama.modeling_llama.apply_rotary_pos_emb`) and GLM's (adjacent
//! pairs over the first part of each head only, the rest passed through; reference:
//! `transformers.models.glm.modeling_glm.apply_rotary_pos_emb`, ChatGLM's
//! `apply_rotary_pos_emb`, ggml's "normal" rope mode). [`RopeLayout`] says which.

use braid_core::{Error, Result};
use candle_core::{DType, Device, Tensor, D};

/// Which dimensions of a head rotate, and how they pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RopeLayout {
    /// Width of a head.
    pub head_dim: usize,
    /// Width the frequencies are computed for (`int(head_dim * partial_rotary_factor)`
    /// in Hugging Face configs): `ceil(rotary_dim / 2)` frequencies
    /// `base^(-2i / rotary_dim)`, rotating the first `2 * ceil(rotary_dim / 2)` dimensions
    /// of each head; the others pass through unchanged.
    pub rotary_dim: usize,
    /// Pairs are adjacent dimensions `(x0, x1), (x2, x3), ...` (GPT-J, GLM) instead of the
    /// two halves `(x_i, x_{i + n/2})` (GPT-NeoX, LLaMA in Hugging Face layout).
    pub interleaved: bool,
}

impl RopeLayout {
    /// The whole head rotates in halves (LLaMA, Qwen2, SmolLM2).
    pub fn full(head_dim: usize) -> Self {
        Self { head_dim, rotary_dim: head_dim, interleaved: false }
    }

    /// Number of frequencies (rotated pairs).
    pub fn pairs(&self) -> usize {
        self.rotary_dim.div_ceil(2)
    }

    /// Dimensions of each head that rotate (the first ones).
    pub fn rotated(&self) -> usize {
        2 * self.pairs()
    }

    /// The frequencies `base^(-2i / rotary_dim)`, `i < pairs`.
    pub fn inv_freq(&self, base: f64) -> Vec<f32> {
        (0..self.pairs())
            .map(|i| (1.0 / base.powf(2.0 * i as f64 / self.rotary_dim as f64)) as f32)
            .collect()
    }

    /// Checks that the rotated dimensions fit in a head; `field` names the config value
    /// an error blames.
    pub fn validate(&self, field: &str) -> Result<()> {
        if self.rotary_dim == 0 || self.rotated() > self.head_dim {
            return Err(Error::config(
                field,
                format!(
                    "rotates {} of a head's {} dimensions (rotary width {}): need 1..={}",
                    self.rotated(),
                    self.head_dim,
                    self.rotary_dim,
                    self.head_dim
                ),
            ));
        }
        if !self.interleaved && self.rotated() != self.head_dim {
            return Err(Error::config(
                field,
                "a partial rotation is only supported with interleaved pairs (GLM)",
            ));
        }
        Ok(())
    }
}

/// Precomputed cos/sin tables `[max_pos, rotated]`, applied with differentiable ops
/// (candle's fused rotary kernels have no backward pass).
#[derive(Debug, Clone)]
pub struct RotaryEmbedding {
    cos: Tensor,
    sin: Tensor,
    layout: RopeLayout,
}

impl RotaryEmbedding {
    /// Tables for positions `0..max_pos` with frequencies `base^(-2i/head_dim)`, the whole
    /// head rotated in halves (`base` is `rope_theta`: 10000 for LLaMA 2, 500000 for LLaMA 3).
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
        Self::with_layout(RopeLayout::full(head_dim), max_pos, base, dtype, device)
    }

    /// Tables for positions `0..max_pos` in `layout`.
    pub fn with_layout(
        layout: RopeLayout,
        max_pos: usize,
        base: f64,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        layout.validate("rope")?;
        let n = layout.pairs();
        let inv_freq = Tensor::from_vec(layout.inv_freq(base), (1, n), device)?;
        let pos =
            Tensor::arange(0u32, max_pos as u32, device)?.to_dtype(DType::F32)?.unsqueeze(1)?;
        let freqs = pos.broadcast_mul(&inv_freq)?;
        let emb = if layout.interleaved {
            // [f0, f0, f1, f1, ...]: each frequency for both members of its pair.
            freqs.unsqueeze(2)?.repeat((1, 1, 2))?.reshape((max_pos, 2 * n))?
        } else {
            Tensor::cat(&[&freqs, &freqs], 1)?
        };
        Ok(Self { cos: emb.cos()?.to_dtype(dtype)?, sin: emb.sin()?.to_dtype(dtype)?, layout })
    }

    /// The layout of the rotation.
    pub fn layout(&self) -> RopeLayout {
        self.layout
    }

    /// Rotates queries or keys whose first position is `offset` (the KV-cache length).
    ///
    /// x: [batch, heads, seq, head_dim] -> [batch, heads, seq, head_dim]
    pub fn apply(&self, x: &Tensor, offset: usize) -> Result<Tensor> {
        let (_, _, seq, d) = x.dims4()?;
        let max_pos = self.cos.dim(0)?;
        if offset + seq > max_pos {
            return Err(Error::Invalid(format!(
                "RoPE: position {} beyond max_pos {max_pos}",
                offset + seq
            )));
        }
        if d != self.layout.head_dim {
            return Err(Error::shape("RoPE input", &[0, 0, seq, self.layout.head_dim], x.dims()));
        }
        let cos = self.cos.narrow(0, offset, seq)?.to_dtype(x.dtype())?;
        let sin = self.sin.narrow(0, offset, seq)?.to_dtype(x.dtype())?;
        if !self.layout.interleaved {
            if crate::fused::applies(&[x]) {
                return Ok(crate::fused::rope(x, &cos, &sin)?);
            }
            return Ok((x.broadcast_mul(&cos)? + rotate_half(x)?.broadcast_mul(&sin)?)?);
        }
        let r = self.layout.rotated();
        let rot = x.narrow(D::Minus1, 0, r)?;
        let y = (rot.broadcast_mul(&cos)? + rotate_pairs(&rot)?.broadcast_mul(&sin)?)?;
        if r == d {
            return Ok(y);
        }
        Ok(Tensor::cat(&[&y, &x.narrow(D::Minus1, r, d - r)?], D::Minus1)?)
    }
}

/// `[x1, x2] -> [-x2, x1]` over the last dimension.
fn rotate_half(x: &Tensor) -> Result<Tensor> {
    let half = x.dim(D::Minus1)? / 2;
    let x1 = x.narrow(D::Minus1, 0, half)?;
    let x2 = x.narrow(D::Minus1, half, half)?;
    Ok(Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)?)
}

/// `[a0, b0, a1, b1, ...] -> [-b0, a0, -b1, a1, ...]` over the last dimension.
fn rotate_pairs(x: &Tensor) -> Result<Tensor> {
    let dims = x.dims().to_vec();
    let n = dims[dims.len() - 1];
    let mut pairs = dims.clone();
    pairs.pop();
    pairs.extend([n / 2, 2]);
    let p = x.reshape(pairs)?;
    let (a, b) = (p.narrow(D::Minus1, 0, 1)?, p.narrow(D::Minus1, 1, 1)?);
    Ok(Tensor::cat(&[&b.neg()?, &a], D::Minus1)?.reshape(dims)?)
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

    /// GLM's layout by its definition: pair `(x[2i], x[2i+1])` turns by `pos * f_i`, the
    /// dimensions past the rotated ones pass through.
    #[test]
    fn interleaved_partial_rotation_turns_adjacent_pairs() -> Result<()> {
        let layout = RopeLayout { head_dim: 10, rotary_dim: 5, interleaved: true };
        assert_eq!((layout.pairs(), layout.rotated()), (3, 6));
        let rope = RotaryEmbedding::with_layout(layout, 8, 500.0, DType::F64, &Device::Cpu)?;
        let x = Tensor::randn(0f64, 1., (1, 2, 4, 10), &Device::Cpu)?;
        let y: Vec<Vec<Vec<f64>>> = rope.apply(&x, 3)?.squeeze(0)?.to_vec3()?;
        let xv: Vec<Vec<Vec<f64>>> = x.squeeze(0)?.to_vec3()?;
        let freqs = layout.inv_freq(500.0);
        for (yh, xh) in y.iter().zip(&xv) {
            for (t, (yt, xt)) in yh.iter().zip(xh).enumerate() {
                let pos = (t + 3) as f64;
                for (i, f) in freqs.iter().enumerate() {
                    let (c, s) = ((pos * f64::from(*f)).cos(), (pos * f64::from(*f)).sin());
                    let (a, b) = (xt[2 * i], xt[2 * i + 1]);
                    assert!((yt[2 * i] - (a * c - b * s)).abs() < 1e-6);
                    assert!((yt[2 * i + 1] - (b * c + a * s)).abs() < 1e-6);
                }
                assert_eq!(&yt[6..], &xt[6..]);
            }
        }
        finite_difference_check(|x| rope.apply(x, 1), &x, 1e-6, 1e-6)
    }

    #[test]
    fn layouts_that_do_not_fit_a_head_are_errors() {
        let bad = [
            RopeLayout { head_dim: 8, rotary_dim: 9, interleaved: true },
            RopeLayout { head_dim: 8, rotary_dim: 0, interleaved: true },
            RopeLayout { head_dim: 8, rotary_dim: 4, interleaved: false },
        ];
        for layout in bad {
            let e = RotaryEmbedding::with_layout(layout, 4, 1e4, DType::F32, &Device::Cpu);
            assert!(e.is_err(), "{layout:?}");
        }
    }
}
