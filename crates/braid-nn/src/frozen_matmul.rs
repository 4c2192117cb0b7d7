//! `x W^T` for a frozen (constant) weight with a gradient for `x` only. candle's matmul
//! backward always computes the gradient of both operands and allocates a zero tensor
//! for each: for a frozen LLM under LoRA that is one needless weight-sized matmul and
//! allocation per projection per step (for SmolLM2's tied 49152 x 576 head alone, a
//! 3.6 GFLOP product per 128 tokens). This custom op computes the product on the storages
//! (no copies; `fused::gemm`, the kernels of candle's matmul threaded by output columns)
//! and, backwards, only `dL/dx = dL/dy W`.

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Shape, Storage, Tensor};

use crate::fused::gemm::{product, rows};
use crate::fused::{dispatch, slice, Float};

/// The op, holding the weight `[out, in]`.
struct FrozenRhs {
    weight: Tensor,
}

/// `g` [n, out] -> `g W` [n, in], forward-only: the backward pass of [`FrozenRhs`].
struct InputGrad<'a> {
    weight: &'a Tensor,
}

/// The weight's elements and its `[out, in]` sizes.
fn with_weight<T: Float, R>(
    w: &Tensor,
    f: impl FnOnce(&[T], usize, usize) -> candle_core::Result<R>,
) -> candle_core::Result<R> {
    let (out, k) = w.dims2()?;
    let (s, l) = w.storage_and_layout();
    let Storage::Cpu(s) = &*s else {
        return Err(candle_core::Error::Msg("frozen matmul: weight not on the CPU".into()));
    };
    f(slice::<T>(s, l)?, out, k)
}

/// x: [n, in] -> x W^T [n, out]
fn forward<T: Float>(
    s: &CpuStorage,
    l: &Layout,
    weight: &Tensor,
) -> candle_core::Result<(CpuStorage, Shape)> {
    let (n, k) = l.shape().dims2()?;
    let x = slice::<T>(s, l)?;
    with_weight::<T, _>(weight, |w, out, k_w| {
        if k_w != k {
            return Err(candle_core::Error::Msg(format!(
                "frozen matmul: x [{n}, {k}] against weight [{out}, {k_w}]"
            )));
        }
        let y = product(rows(x, n, k), rows(w, out, k).t(), T::one())?;
        Ok((T::to_cpu_storage_owned(y), Shape::from((n, out))))
    })
}

/// g: [n, out] -> g W [n, in]
fn input_grad<T: Float>(
    s: &CpuStorage,
    l: &Layout,
    weight: &Tensor,
) -> candle_core::Result<(CpuStorage, Shape)> {
    let (n, out) = l.shape().dims2()?;
    let g = slice::<T>(s, l)?;
    with_weight::<T, _>(weight, |w, out_w, k| {
        if out_w != out {
            return Err(candle_core::Error::Msg(format!(
                "frozen matmul backward: gradient [{n}, {out}] against weight [{out_w}, {k}]"
            )));
        }
        let dx = product(rows(g, n, out), rows(w, out, k), T::one())?;
        Ok((T::to_cpu_storage_owned(dx), Shape::from((n, k))))
    })
}

impl CustomOp1 for FrozenRhs {
    fn name(&self) -> &'static str {
        "braid-frozen-matmul"
    }

    /// x: [n, in] -> [n, out] (the weight read transposed in place).
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        dispatch!(s, forward(s, l, &self.weight))
    }

    fn bwd(
        &self,
        _arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(grad.contiguous()?.apply_op1_no_bwd(&InputGrad { weight: &self.weight })?))
    }
}

impl CustomOp1 for InputGrad<'_> {
    fn name(&self) -> &'static str {
        "braid-frozen-matmul-grad"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        dispatch!(s, input_grad(s, l, self.weight))
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
    x.contiguous()?.apply_op1(FrozenRhs { weight: weight.contiguous()? })
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
