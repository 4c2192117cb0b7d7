//! Sequence pooling: masked mean (sentence-transformers), first token (BERT's CLS), and
//! last real token (decoder embeddings).

use braid_core::Result;
use candle_core::{DType, Tensor};
use serde::{Deserialize, Serialize};

/// How a sequence of hidden states becomes one vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pooling {
    /// [`mean_pool`].
    #[default]
    Mean,
    /// [`cls_pool`].
    Cls,
    /// [`last_token_pool`].
    LastToken,
}

impl Pooling {
    /// x: [batch, seq, dim]; mask: [batch, seq] of 1/0 -> [batch, dim]
    pub fn forward(&self, x: &Tensor, mask: &Tensor) -> Result<Tensor> {
        match self {
            Self::Mean => mean_pool(x, mask),
            Self::Cls => cls_pool(x),
            Self::LastToken => last_token_pool(x, mask),
        }
    }
}

/// Mean over the positions where `mask` is 1 (a row with no real token gives zeros).
///
/// x: [batch, seq, dim]; mask: [batch, seq] of 1/0 -> [batch, dim]
pub fn mean_pool(x: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let m = mask.to_dtype(x.dtype())?.unsqueeze(2)?;
    let summed = x.broadcast_mul(&m)?.sum(1)?;
    let count = m.sum(1)?.clamp(1e-9, f64::INFINITY)?;
    Ok(summed.broadcast_div(&count)?)
}

/// The first position. x: [batch, seq, dim] -> [batch, dim]
pub fn cls_pool(x: &Tensor) -> Result<Tensor> {
    Ok(x.narrow(1, 0, 1)?.squeeze(1)?)
}

/// The last position where `mask` is 1 (works for left and right padding).
///
/// x: [batch, seq, dim]; mask: [batch, seq] of 1/0 -> [batch, dim]
pub fn last_token_pool(x: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let (b, t, d) = x.dims3()?;
    let pos = Tensor::arange(1u32, t as u32 + 1, x.device())?.unsqueeze(0)?;
    // (position + 1) * mask, so the argmax is the last real token.
    let marked = pos.broadcast_mul(&mask.ne(0.0)?.to_dtype(DType::U32)?)?;
    let idx = marked.argmax_keepdim(1)?.reshape((b, 1, 1))?;
    let idx = idx.broadcast_as((b, 1, d))?.contiguous()?;
    Ok(x.gather(&idx, 1)?.squeeze(1)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;
    use crate::gradcheck::finite_difference_check;
    use candle_core::Device;

    #[test]
    fn matches_pytorch() -> Result<()> {
        let f = fixtures::load("pooling")?;
        let (x, mask) = (f.get("x")?, f.get("mask")?);
        fixtures::check(&mean_pool(&x, &mask)?, &f.get("mean")?, "mean pool")?;
        fixtures::check(&cls_pool(&x)?, &f.get("cls")?, "cls pool")?;
        fixtures::check(&last_token_pool(&x, &mask)?, &f.get("last")?, "last-token pool")?;
        f.assert_all_used()
    }

    #[test]
    fn gradients_match_finite_differences() -> Result<()> {
        let x = Tensor::randn(0f64, 1., (2, 4, 3), &Device::Cpu)?;
        let mask = Tensor::new(&[[1u32, 1, 1, 0], [0, 1, 1, 1]], &Device::Cpu)?;
        for p in [Pooling::Mean, Pooling::Cls, Pooling::LastToken] {
            finite_difference_check(|x| p.forward(x, &mask), &x, 1e-6, 1e-6)?;
        }
        Ok(())
    }
}
