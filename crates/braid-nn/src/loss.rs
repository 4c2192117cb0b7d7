//! Cross-entropy over class logits, with PyTorch's `ignore_index` semantics.

use braid_core::{Error, Result};
use candle_core::{DType, Tensor, D};

use crate::log_softmax;

/// Mean negative log-likelihood over the targets that are not `ignore_index` (PyTorch's
/// `F.cross_entropy(..., ignore_index=...)`, reduction "mean"). When every target is
/// ignored the loss is 0 rather than PyTorch's NaN, so a fully padded batch cannot poison
/// training.
///
/// logits: [n, classes] or [batch, seq, classes]; targets: [n] or [batch, seq], any integer
/// dtype -> scalar []
pub fn cross_entropy(
    logits: &Tensor,
    targets: &Tensor,
    ignore_index: Option<i64>,
) -> Result<Tensor> {
    let classes = logits.dim(D::Minus1)?;
    let logits = logits.reshape(((), classes))?;
    let targets = targets.flatten_all()?.to_dtype(DType::I64)?;
    let n = logits.dim(0)?;
    if targets.dim(0)? != n {
        return Err(Error::shape("cross_entropy targets", &[n], targets.dims()));
    }
    let keep = match ignore_index {
        Some(ignored) => targets.ne(ignored)?,
        None => targets.ones_like()?.to_dtype(DType::U8)?,
    };
    let safe = keep.where_cond(&targets, &targets.zeros_like()?)?;
    let logp = log_softmax(&logits, D::Minus1)?;
    let picked = logp.gather(&safe.to_dtype(DType::U32)?.unsqueeze(1)?, 1)?.squeeze(1)?;
    let keep = keep.to_dtype(logits.dtype())?;
    let count = keep.sum_all()?.to_dtype(DType::F64)?.to_scalar::<f64>()?.max(1.0);
    Ok(((picked * keep)?.sum_all()?.neg()? / count)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;
    use crate::gradcheck::finite_difference_check;
    use candle_core::Device;

    #[test]
    fn matches_pytorch() -> Result<()> {
        let f = fixtures::load("cross_entropy")?;
        let (logits, targets) = (f.get("logits")?, f.get("targets")?);
        fixtures::check(&cross_entropy(&logits, &targets, Some(-100))?, &f.get("loss")?, "ce")?;
        let (full, want) = (f.get("targets_full")?, f.get("loss_full")?);
        fixtures::check(&cross_entropy(&logits, &full, None)?, &want, "ce without ignore")?;
        f.assert_all_used()
    }

    #[test]
    fn all_ignored_is_zero() -> Result<()> {
        let logits = Tensor::randn(0f32, 1., (3, 4), &Device::Cpu)?;
        let t = Tensor::new(&[-100i64, -100, -100], &Device::Cpu)?;
        assert_eq!(cross_entropy(&logits, &t, Some(-100))?.to_scalar::<f32>()?, 0.0);
        Ok(())
    }

    #[test]
    fn gradients_match_finite_differences() -> Result<()> {
        let logits = Tensor::randn(0f64, 1., (2, 3, 5), &Device::Cpu)?;
        let t = Tensor::new(&[[1i64, -100, 4], [0, 2, -100]], &Device::Cpu)?;
        finite_difference_check(|x| cross_entropy(x, &t, Some(-100)), &logits, 1e-6, 1e-6)
    }
}
