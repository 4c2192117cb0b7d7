//! Softmax and log-softmax from differentiable ops (candle's fused `softmax_last_dim` has no
//! backward pass); the fused kernel runs only where no gradient can be needed.

use braid_core::Result;
use candle_core::{shape::Dim, Tensor, D};

use crate::fused_ok;

/// Softmax along `dim`, stabilised by subtracting the (detached) maximum; subtracting any
/// constant leaves softmax unchanged, so detaching it does not change the gradient.
///
/// x: [..any] -> same shape, rows along `dim` summing to one
pub fn softmax<Dm: Dim + Copy>(x: &Tensor, dim: Dm) -> Result<Tensor> {
    let shifted = x.broadcast_sub(&x.max_keepdim(dim)?.detach())?;
    let e = shifted.exp()?;
    Ok(e.broadcast_div(&e.sum_keepdim(dim)?)?)
}

/// Softmax along the last dimension. x: [..., n] -> [..., n]
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    if fused_ok(&[x]) {
        return Ok(candle_nn::ops::softmax_last_dim(&x.contiguous()?)?);
    }
    softmax(x, D::Minus1)
}

/// `log(softmax(x))` along `dim`, computed as `x - max - log(sum(exp(x - max)))`.
///
/// x: [..any] -> same shape
pub fn log_softmax<Dm: Dim + Copy>(x: &Tensor, dim: Dm) -> Result<Tensor> {
    let shifted = x.broadcast_sub(&x.max_keepdim(dim)?.detach())?;
    let lse = shifted.exp()?.sum_keepdim(dim)?.log()?;
    Ok(shifted.broadcast_sub(&lse)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;
    use crate::gradcheck::finite_difference_check;
    use candle_core::Device;

    #[test]
    fn matches_pytorch() -> Result<()> {
        let f = fixtures::load("softmax")?;
        let x = f.get("x")?;
        fixtures::check(&softmax_last_dim(&x)?, &f.get("softmax_last")?, "softmax last")?;
        fixtures::check(&softmax(&x, 1)?, &f.get("softmax_dim1")?, "softmax dim 1")?;
        fixtures::check(&log_softmax(&x, D::Minus1)?, &f.get("log_softmax")?, "log_softmax")?;
        f.assert_all_used()
    }

    #[test]
    fn large_logits_do_not_overflow() -> Result<()> {
        let x = Tensor::new(&[[1000f32, 1001., 999.]], &Device::Cpu)?;
        let p = softmax_last_dim(&x)?.to_vec2::<f32>()?;
        assert!(p[0].iter().all(|v| v.is_finite()));
        assert!((p[0].iter().sum::<f32>() - 1.0).abs() < 1e-6);
        Ok(())
    }

    #[test]
    fn gradients_match_finite_differences() -> Result<()> {
        let x = Tensor::randn(0f64, 2., (2, 3, 5), &Device::Cpu)?;
        finite_difference_check(softmax_last_dim, &x, 1e-6, 1e-6)?;
        finite_difference_check(|x| softmax(x, 1), &x, 1e-6, 1e-6)?;
        finite_difference_check(|x| log_softmax(x, D::Minus1), &x, 1e-6, 1e-6)
    }

    #[test]
    fn fused_inference_path_equals_differentiable_path() -> Result<()> {
        let x = Tensor::randn(0f32, 3.0, (3, 4, 9), &Device::Cpu)?;
        let tracked = candle_core::Var::from_tensor(&x)?;
        let composed = softmax_last_dim(tracked.as_tensor())?;
        assert!(composed.track_op(), "a variable must take the differentiable path");
        fixtures::check(&softmax_last_dim(&x)?, &composed.detach(), "fused vs composed softmax")
    }
}
