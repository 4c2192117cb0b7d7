//! Fused CPU kernels that have a backward pass: attention, 2-D convolution, group norm,
//! LoRA projections, RMSNorm, RoPE and SwiGLU, each one pass over its rows on rayon's pool, forward and backward.
//!
//! Composed from candle ops, each of these is four to eight single-threaded kernels with an
//! allocation each, and their backward passes twice that; attention alone was two batched
//! matmuls of one tiny product per (batch, head), a mask, a softmax and four copies (the
//! pattern followed is PyTorch's fused CPU kernels in `aten/src/ATen/native/cpu`). The
//! backward passes are forward-only custom ops, so no graph is built while computing
//! gradients.
//!
//! A layer calls [`applies`] and falls back to its composed ops elsewhere (other devices,
//! half precision, no gradient needed: there candle's own fused inference kernels run).

mod attention;
mod conv2d;
pub(crate) mod gemm;
mod group_norm;
mod lora;
mod rms_norm;
mod rope;
mod swiglu;

pub use attention::{attention, AttentionMask};
pub use conv2d::conv2d;
pub use group_norm::group_norm;
pub use lora::lora_linear;
pub use rms_norm::rms_norm;
pub use rope::rope;
pub use swiglu::{silu, silu_mul};

use candle_core::{CpuStorage, DType, Layout, Tensor, WithDType};
use rayon::prelude::*;

/// Whether the fused training kernels apply to `ts`: all on the CPU in one of f32 / f64, and
/// a gradient may be needed through one of them.
pub fn applies(ts: &[&Tensor]) -> bool {
    on_cpu(ts) && crate::needs_grad(ts)
}

/// Whether every tensor of `ts` is on the CPU in one dtype the kernels take (f32 or f64):
/// where a kernel is also the faster forward (convolution, group norm), layers use it with
/// or without a gradient.
pub fn on_cpu(ts: &[&Tensor]) -> bool {
    let Some(first) = ts.first() else { return false };
    let dtype = first.dtype();
    matches!(dtype, DType::F32 | DType::F64)
        && ts.iter().all(|t| t.device().is_cpu() && t.dtype() == dtype)
}

/// The element type the kernels are written for (f32 and f64).
pub(crate) trait Float:
    WithDType + num_traits::Float + std::ops::AddAssign + std::ops::MulAssign + Send + Sync
{
    /// `e^x`; in f32 a branch-free polynomial the compiler vectorises.
    fn exp_fast(self) -> Self;

    /// `1 / (1 + e^-x)`.
    fn sigmoid(self) -> Self {
        Self::one() / (Self::one() + (-self).exp_fast())
    }
}

impl Float for f32 {
    /// Cephes' `expf` (range reduction by `ln 2` in two parts, a degree-6 polynomial, the
    /// exponent put in by bit arithmetic): within 2 ulp of `f32::exp`, 0 below -87.3.
    #[inline(always)]
    fn exp_fast(self) -> f32 {
        const LOG2E: f32 = std::f32::consts::LOG2_E;
        let x = self.min(88.3);
        let n = (x * LOG2E + 0.5).floor();
        let r = x - n * 0.693_359_4 + n * 2.121_944_4e-4;
        let mut p = 1.987_569_1e-4_f32;
        p = p * r + 1.398_2e-3;
        p = p * r + 8.333_452e-3;
        p = p * r + 4.166_579_6e-2;
        p = p * r + 0.166_666_65;
        p = p * r + 0.5;
        let y = p * r * r + r + 1.0;
        // n is in [-127, 128) here, so the biased exponent fits its 8 bits.
        let scale = f32::from_bits((((n.max(-126.0) as i32) + 127) as u32) << 23);
        if self.is_nan() {
            self
        } else if x < -87.3 {
            0.0
        } else {
            y * scale
        }
    }
}

impl Float for f64 {
    fn exp_fast(self) -> f64 {
        self.exp()
    }
}

/// `sum a * b` with eight independent accumulators, so the loop vectorises.
pub(crate) fn dot<T: Float>(a: &[T], b: &[T]) -> T {
    let mut acc = [T::zero(); 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail = ca.remainder().iter().zip(cb.remainder()).fold(T::zero(), |s, (&x, &y)| s + x * y);
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    acc.iter().fold(tail, |s, &v| s + v)
}

/// `sum xs`, eight lanes at a time.
pub(crate) fn sum<T: Float>(xs: &[T]) -> T {
    let mut acc = [T::zero(); 8];
    let chunks = xs.chunks_exact(8);
    let tail = chunks.remainder().iter().fold(T::zero(), |s, &v| s + v);
    for x in chunks {
        for l in 0..8 {
            acc[l] += x[l];
        }
    }
    acc.iter().fold(tail, |s, &v| s + v)
}

/// The contiguous elements of a storage under `l`.
pub(crate) fn slice<'a, T: WithDType>(
    s: &'a CpuStorage,
    l: &Layout,
) -> candle_core::Result<&'a [T]> {
    let (start, end) = l
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg("fused kernel: input must be contiguous".into()))?;
    Ok(&s.as_slice::<T>()?[start..end])
}

/// `f` on the contiguous CPU elements of a tensor an op holds (a weight, an output's
/// gradient); `what` names it in the error when it is not on the CPU.
pub(crate) fn with_slice<T: WithDType, R>(
    t: &Tensor,
    what: &str,
    f: impl FnOnce(&[T]) -> candle_core::Result<R>,
) -> candle_core::Result<R> {
    let (s, l) = t.storage_and_layout();
    let candle_core::Storage::Cpu(s) = &*s else {
        return Err(candle_core::Error::Msg(format!("{what} not on the CPU")));
    };
    f(slice::<T>(s, l)?)
}

/// Fills `out` (`[rows, width]`) row by row on rayon's pool: `f(row index, row)`. Tasks get
/// at least ~16k elements, so small tensors do not pay for the threads.
pub(crate) fn par_rows<T: Send>(out: &mut [T], width: usize, f: impl Fn(usize, &mut [T]) + Sync) {
    let width = width.max(1);
    out.par_chunks_mut(width)
        .with_min_len((16_384 / width).max(1))
        .enumerate()
        .for_each(|(i, row)| f(i, row));
}

/// Fills `out` element-wise in parallel chunks: `f(offset of the chunk, chunk)`.
pub(crate) fn par_chunks<T: Send>(out: &mut [T], f: impl Fn(usize, &mut [T]) + Sync) {
    const CHUNK: usize = 16_384;
    out.par_chunks_mut(CHUNK).enumerate().for_each(|(i, chunk)| f(i * CHUNK, chunk));
}

/// A zeroed output buffer of `n` elements.
pub(crate) fn zeros<T: Float>(n: usize) -> Vec<T> {
    vec![T::zero(); n]
}

/// Dispatches a kernel generic over [`Float`] on the storage's dtype.
macro_rules! dispatch {
    ($storage:expr, $kernel:ident ( $($arg:expr),* )) => {
        match $storage {
            candle_core::CpuStorage::F32(_) => $kernel::<f32>($($arg),*),
            candle_core::CpuStorage::F64(_) => $kernel::<f64>($($arg),*),
            other => Err(candle_core::Error::Msg(format!(
                "fused kernel: f32 or f64 only, got {:?}",
                candle_core::backend::BackendStorage::dtype(other)
            ))),
        }
    };
}
pub(crate) use dispatch;

#[cfg(test)]
pub(crate) mod testing {
    //! Comparisons of a fused op with its composed reference, values and gradients.

    use braid_core::{Error, Result};
    use candle_core::{Tensor, Var};

    /// Max |a - b| / (1 + max |b|).
    pub(crate) fn rel_diff(a: &Tensor, b: &Tensor) -> Result<f64> {
        let a = a.to_dtype(candle_core::DType::F64)?.flatten_all()?.to_vec1::<f64>()?;
        let b = b.to_dtype(candle_core::DType::F64)?.flatten_all()?.to_vec1::<f64>()?;
        if a.len() != b.len() {
            return Err(Error::Invalid(format!("{} vs {} elements", a.len(), b.len())));
        }
        let scale = b.iter().fold(0f64, |m, v| m.max(v.abs()));
        let diff = a.iter().zip(&b).fold(0f64, |m, (x, y)| m.max((x - y).abs()));
        Ok(diff / (1.0 + scale))
    }

    /// The gradients of `sum(f(inputs) * r)` with respect to every input, r fixed.
    pub(crate) fn grads(
        f: impl Fn(&[Tensor]) -> Result<Tensor>,
        inputs: &[Tensor],
        r: &Tensor,
    ) -> Result<(Tensor, Vec<Tensor>)> {
        let vars = inputs.iter().map(Var::from_tensor).collect::<candle_core::Result<Vec<_>>>()?;
        let ts: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
        let y = f(&ts)?;
        let g = (&y * r)?.sum_all()?.backward()?;
        let gs = ts
            .iter()
            .map(|t| g.get(t).cloned().ok_or_else(|| Error::Invalid("no gradient".into())))
            .collect::<Result<Vec<_>>>()?;
        Ok((y.detach(), gs))
    }

    /// Asserts that `fused` and `composed` agree in value and in every input's gradient to
    /// `tol` (relative to the reference's scale).
    pub(crate) fn assert_same(
        fused: impl Fn(&[Tensor]) -> Result<Tensor>,
        composed: impl Fn(&[Tensor]) -> Result<Tensor>,
        inputs: &[Tensor],
        tol: f64,
    ) -> Result<()> {
        let probe = composed(inputs)?;
        let r = Tensor::randn(0f64, 1., probe.shape(), probe.device())?.to_dtype(probe.dtype())?;
        let (yf, gf) = grads(&fused, inputs, &r)?;
        let (yc, gc) = grads(&composed, inputs, &r)?;
        let d = rel_diff(&yf, &yc)?;
        assert!(d <= tol, "values differ by {d}");
        for (i, (a, b)) in gf.iter().zip(&gc).enumerate() {
            let d = rel_diff(a, b)?;
            assert!(d <= tol, "gradient of input {i} differs by {d}");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::Float;

    #[test]
    fn fast_exp_is_within_two_ulp_of_exp() {
        let mut worst = 0f32;
        for i in -90_000..=88_000 {
            let x = i as f32 * 1e-3 + 1.234_567e-4;
            let (fast, exact) = (x.exp_fast(), x.exp());
            if x < -87.3 {
                assert!(fast == 0.0 && exact < 1.5e-38, "{x}: {fast}");
                continue;
            }
            worst = worst.max((fast - exact).abs() / exact);
        }
        assert!(worst < 2.5e-7, "worst relative error {worst}");
        assert!(f32::INFINITY.exp_fast().is_finite() && f32::NEG_INFINITY.exp_fast() == 0.0);
        assert!(f32::NAN.exp_fast().is_nan(), "NaN stays NaN");
    }
}
