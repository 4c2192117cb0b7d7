//! What an encoder hands to a projector.

use candle_core::{DType, Tensor};

use crate::{Error, Result};

/// A batch of token features with a validity mask.
#[derive(Debug, Clone)]
pub struct Features {
    /// `[batch, n, dim]`.
    pub tokens: Tensor,
    /// `[batch, n]`, 1 for real tokens and 0 for padding; `None` means all are real.
    pub mask: Option<Tensor>,
}

impl Features {
    /// Checks that `tokens` is rank 3 and `mask`, if given, is `[batch, n]`.
    pub fn new(tokens: Tensor, mask: Option<Tensor>) -> Result<Self> {
        let dims = tokens.dims();
        if dims.len() != 3 {
            return Err(Error::Invalid(format!(
                "features tokens must be [batch, n, dim], got shape {dims:?}"
            )));
        }
        if let Some(m) = &mask {
            if m.dims() != &dims[..2] {
                return Err(Error::shape("features mask", &dims[..2], m.dims()));
            }
        }
        Ok(Self { tokens, mask })
    }

    /// `(batch, n, dim)`.
    pub fn dims3(&self) -> Result<(usize, usize, usize)> {
        Ok(self.tokens.dims3()?)
    }

    /// The mask as f32 `[batch, n]`, all ones when none was given.
    pub fn mask_or_ones(&self) -> Result<Tensor> {
        let (b, n, _) = self.dims3()?;
        Ok(match &self.mask {
            Some(m) => m.to_dtype(DType::F32)?,
            None => Tensor::ones((b, n), DType::F32, self.tokens.device())?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn rejects_bad_shapes() {
        let t = Tensor::zeros((2, 3, 4), DType::F32, &Device::Cpu).unwrap();
        let m = Tensor::ones((2, 4), DType::F32, &Device::Cpu).unwrap();
        let e = Features::new(t.clone(), Some(m)).unwrap_err();
        assert!(e.to_string().contains("features mask: expected shape [2, 3], got [2, 4]"));
        let flat = Tensor::zeros((2, 3), DType::F32, &Device::Cpu).unwrap();
        assert!(Features::new(flat, None).is_err());
        let f = Features::new(t, None).unwrap();
        assert_eq!(f.mask_or_ones().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap(), 6.0);
    }
}
