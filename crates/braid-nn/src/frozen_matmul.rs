//! `x W^T` for a frozen (constant) weight with a gradient for `x` only. candle's matmul
//! backward always computes the gradient of both operands and allocates a zero tensor
//! for each: for a frozen LLM under LoRA that is one needless weight-sized matmul and
//! allocation per projection per step (for SmolLM2's tied 49152 x 576 head alone, a
//! 3.6 GFLOP product per 128 tokens). This custom op computes the product on the storages
//! (no copies; `fused::gemm`, the kernels of candle's matmul threaded by output columns)
//! and, backwards, only `dL/dx = dL/dy W`.

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Shape, Tensor};

use crate::fused::gemm::{product, rows};
use crate::fused::{dispatch, slice, with_slice, Float};

/// The op, holding the weight `[out, in]`.
struct FrozenRhs {
    weight: Tensor,
}

/// `g` [n, out] -> `g W` [n, in], forward-only: the backward pass of [`FrozenRhs`].
struct InputGrad<'a> {
    weight: &'a Tensor,
}

/// `a W^T` (`transposed`: a [n, in] -> [n, out], the forward product) or `a W` (a [n, out]
/// -> [n, in], the input gradient), W `[out, in]` read in place.
fn times_weight<T: Float>(
    s: &CpuStorage,
    l: &Layout,
    weight: &Tensor,
    transposed: bool,
) -> candle_core::Result<(CpuStorage, Shape)> {
    let (n, width) = l.shape().dims2()?;
    let a = slice::<T>(s, l)?;
    let (out, k) = weight.dims2()?;
    let (inner, cols) = if transposed { (k, out) } else { (out, k) };
    if width != inner {
        return Err(candle_core::Error::Msg(format!(
            "frozen matmul: [{n}, {width}] against weight [{out}, {k}]{}",
            if transposed { "" } else { " (backward)" }
        )));
    }
    with_slice::<T, _>(weight, "frozen matmul: weight", |w| {
        let w = if transposed { rows(w, out, k).t() } else { rows(w, out, k) };
        let y = product(rows(a, n, inner), w, T::one())?;
        Ok((T::to_cpu_storage_owned(y), Shape::from((n, cols))))
    })
}

impl CustomOp1 for FrozenRhs {
    fn name(&self) -> &'static str {
        "braid-frozen-matmul"
    }

    /// x: [n, in] -> [n, out] (the weight read transposed in place).
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        dispatch!(s, times_weight(s, l, &self.weight, true))
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
        dispatch!(s, times_weight(s, l, self.weight, false))
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
