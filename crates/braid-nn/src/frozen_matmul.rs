//! `x W^T` for a frozen (constant) weight with a gradient for `x` only. candle's matmul
//! backward always computes the gradient of both operands and allocates a zero tensor
//! for each: for a frozen LLM under LoRA that is one needless weight-sized matmul and
//! allocation per projection per step (for SmolLM2's tied 49152 x 576 head alone, a
//! 3.6 GFLOP product per 128 tokens). This custom op computes the product with candle's
//! CPU matmul on the storages (no copies) and, backwards, only `dL/dx = dL/dy W`.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, DType, Layout, Shape, Storage, Tensor};

/// The op, holding the weight `[out, in]`.
struct FrozenRhs {
    weight: Tensor,
}

impl CustomOp1 for FrozenRhs {
    fn name(&self) -> &'static str {
        "braid-frozen-matmul"
    }

    /// x: [n, in] -> [n, out], straight on the storages (candle's own CPU matmul, the
    /// weight read transposed in place).
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (n, k) = l.shape().dims2()?;
        let (w, wl) = self.weight.storage_and_layout();
        let Storage::Cpu(w) = &*w else {
            return Err(candle_core::Error::Msg("frozen matmul: weight not on the CPU".into()));
        };
        let (out, k_w) = wl.shape().dims2()?;
        if k_w != k {
            return Err(candle_core::Error::Msg(format!(
                "frozen matmul: x [{n}, {k}] against weight [{out}, {k_w}]"
            )));
        }
        let y = s.matmul(w, (1, n, out, k), l, &wl.transpose(0, 1)?)?;
        Ok((y, Shape::from((n, out))))
    }

    fn bwd(
        &self,
        _arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(grad.matmul(&self.weight)?))
    }
}

/// Whether [`frozen_matmul`] applies: `x` needs a gradient, `weight` is a constant, both on
/// the CPU in f32 or f64.
pub fn frozen_applies(x: &Tensor, weight: &Tensor) -> bool {
    x.track_op()
        && !weight.track_op()
        && x.device().is_cpu()
        && matches!(
            (x.dtype(), weight.dtype()),
            (DType::F32, DType::F32) | (DType::F64, DType::F64)
        )
}

/// x: [n, in], weight: [out, in] (constant) -> x W^T [n, out], with a gradient for x only.
pub fn frozen_matmul(x: &Tensor, weight: &Tensor) -> candle_core::Result<Tensor> {
    x.contiguous()?.apply_op1(FrozenRhs { weight: weight.clone() })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use candle_core::{Device, Var};

    use super::*;
    use crate::gradcheck::finite_difference_check;

    #[test]
    fn same_values_and_input_gradient_as_matmul() {
        let dev = Device::Cpu;
        let w = Tensor::randn(0f64, 1.0, (5, 3), &dev).unwrap();
        let x = Var::from_tensor(&Tensor::randn(0f64, 1.0, (4, 3), &dev).unwrap()).unwrap();
        assert!(frozen_applies(x.as_tensor(), &w));
        let (a, b) = (
            frozen_matmul(x.as_tensor(), &w).unwrap(),
            x.as_tensor().matmul(&w.t().unwrap()).unwrap(),
        );
        let diff = (&a - &b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f64>().unwrap();
        assert!(diff < 1e-12);
        let ga = a.sqr().unwrap().sum_all().unwrap().backward().unwrap();
        let gb = b.sqr().unwrap().sum_all().unwrap().backward().unwrap();
        let d = (ga.get(x.as_tensor()).unwrap() - gb.get(x.as_tensor()).unwrap())
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        assert!(d < 1e-12, "{d}");
        assert!(ga.get(&w).is_none(), "no gradient is made for the frozen weight");
        finite_difference_check(|x| Ok(frozen_matmul(x, &w)?), x.as_tensor(), 1e-6, 1e-6).unwrap();
    }
}
