//! Gradient clipping by global norm, as `torch.nn.utils.clip_grad_norm_` (L2, non-foreach):
//! the norm is taken over all gradients as one vector; every gradient is multiplied by
//! `min(1, max_norm / (norm + 1e-6))`.

use braid_core::Result;

use super::Grads;

/// Clips `grads` in place to a global L2 norm of at most `max_norm`; returns the norm
/// before clipping (what training logs report as `grad_norm`). A non-finite norm is
/// returned as is and the gradients are scaled by NaN, as PyTorch does, so the caller's
/// NaN check sees it.
pub fn clip_grad_norm(grads: &mut Grads, max_norm: f64) -> Result<f64> {
    let mut sq = 0f64;
    for (_, g) in grads.iter() {
        let s = g.sqr()?.sum_all()?.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?;
        sq += s;
    }
    let norm = sq.sqrt();
    let coef = (max_norm / (norm + 1e-6)).min(1.0);
    if coef < 1.0 || !coef.is_finite() {
        *grads = grads.scale(coef)?;
    }
    Ok(norm)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::collections::BTreeMap;

    use candle_core::{Device, Tensor};

    use super::*;

    fn grads() -> Grads {
        let a = Tensor::new(&[3f32], &Device::Cpu).unwrap();
        let b = Tensor::new(&[[4f32]], &Device::Cpu).unwrap();
        Grads::from_map(BTreeMap::from([("a".into(), a), ("b".into(), b)]))
    }

    #[test]
    fn clips_to_max_norm_and_returns_pre_clip_norm() {
        let mut g = grads();
        let norm = clip_grad_norm(&mut g, 1.0).unwrap();
        assert!((norm - 5.0).abs() < 1e-9);
        let a = g.get("a").unwrap().to_vec1::<f32>().unwrap()[0];
        assert!((a - 0.6).abs() < 1e-6, "{a}");
    }

    #[test]
    fn leaves_small_gradients_alone() {
        let mut g = grads();
        clip_grad_norm(&mut g, 10.0).unwrap();
        assert_eq!(g.get("a").unwrap().to_vec1::<f32>().unwrap(), vec![3.0]);
    }
}
