//! A LoRA projection with a frozen base, `y = x W^T + s (x A^T) B^T` (Hu et al. 2021;
//! PEFT `lora.Linear`), as one op: three products forward, up to five backward
//! (`dB = s g^T (x A^T)`, `dA = s (g B)^T x`, `dx = g W + s (g B) A`), the sums taken inside
//! the products. Composed from candle ops it was a broadcast matmul per sample for each of
//! A and B, a scale, an add, and backwards twice the products plus a sum over the batch of
//! A's and B's broadcast gradients, for each of a layer's seven projections.

use std::sync::Mutex;

use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Storage, Tensor};

use super::gemm::{gemm, product, rows};
use super::{dispatch, slice, with_slice, zeros, Float};

/// x: [n, in]; weight: [out, in] (a constant); a: [r, in]; b: [out, r] -> [n, out]
pub fn lora_linear(
    x: &Tensor,
    weight: &Tensor,
    a: &Tensor,
    b: &Tensor,
    scale: f64,
) -> candle_core::Result<Tensor> {
    let (_, din) = x.dims2()?;
    let (dout, din_w) = weight.dims2()?;
    let (r, din_a) = a.dims2()?;
    if din_w != din || din_a != din || b.dims() != [dout, r] {
        return Err(candle_core::Error::Msg(format!(
            "lora: x {:?}, weight {:?}, A {:?}, B {:?}",
            x.dims(),
            weight.dims(),
            a.dims(),
            b.dims()
        )));
    }
    let op = Lora { weight: weight.contiguous()?, scale, xa: Mutex::new(None) };
    x.contiguous()?.apply_op3(&a.contiguous()?, &b.contiguous()?, op)
}

struct Lora {
    weight: Tensor,
    scale: f64,
    /// `x A^T` `[n, r]` from the forward pass, taken by the backward pass.
    xa: Mutex<Option<CpuStorage>>,
}

/// The sizes of one call: rows, input width, rank, output width.
#[derive(Clone, Copy)]
struct Dims {
    n: usize,
    din: usize,
    r: usize,
    dout: usize,
}

impl Dims {
    fn of(lx: &Layout, la: &Layout, lb: &Layout) -> candle_core::Result<Self> {
        let (n, din) = lx.shape().dims2()?;
        let (r, _) = la.shape().dims2()?;
        let (dout, _) = lb.shape().dims2()?;
        Ok(Self { n, din, r, dout })
    }
}

/// `x A^T` `[n, r]`.
fn down<T: Float>(x: &[T], a: &[T], d: Dims) -> candle_core::Result<Vec<T>> {
    let mut xa = zeros::<T>(d.n * d.r);
    gemm(
        rows(&mut xa[..], d.n, d.r),
        rows(x, d.n, d.din),
        rows(a, d.r, d.din).t(),
        T::one(),
        false,
    )?;
    Ok(xa)
}

fn forward<T: Float>(
    (x, lx): (&CpuStorage, &Layout),
    (a, la): (&CpuStorage, &Layout),
    (b, lb): (&CpuStorage, &Layout),
    op: &Lora,
) -> candle_core::Result<(CpuStorage, Shape)> {
    let d = Dims::of(lx, la, lb)?;
    let (x, a, b) = (slice::<T>(x, lx)?, slice::<T>(a, la)?, slice::<T>(b, lb)?);
    let scale = T::from(op.scale).unwrap_or_else(T::nan);
    let mut y = with_slice::<T, _>(&op.weight, "lora: weight", |w| {
        product(rows(x, d.n, d.din), rows(w, d.dout, d.din).t(), T::one())
    })?;
    let xa = down(x, a, d)?;
    gemm(
        rows(&mut y[..], d.n, d.dout),
        rows(&xa[..], d.n, d.r),
        rows(b, d.dout, d.r).t(),
        scale,
        true,
    )?;
    if let Ok(mut kept) = op.xa.lock() {
        *kept = Some(T::to_cpu_storage_owned(xa));
    }
    Ok((T::to_cpu_storage_owned(y), Shape::from((d.n, d.dout))))
}

impl CustomOp3 for Lora {
    fn name(&self) -> &'static str {
        "braid-lora"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        lx: &Layout,
        a: &CpuStorage,
        la: &Layout,
        b: &CpuStorage,
        lb: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        dispatch!(x, forward((x, lx), (a, la), (b, lb), self))
    }

    fn bwd(
        &self,
        x: &Tensor,
        a: &Tensor,
        b: &Tensor,
        _y: &Tensor,
        g: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let xa = self.xa.lock().ok().and_then(|mut p| p.take());
        let grad = LoraGrad { fwd: self, g: g.contiguous()?, xa, need_x: x.track_op() };
        // One buffer [dx | dA | dB], split by views.
        let grads = x.apply_op3_no_bwd(a, b, &grad)?;
        let (nx, na) = (x.elem_count(), a.elem_count());
        let dx = grads.narrow(0, 0, nx)?.reshape(x.shape())?;
        let da = grads.narrow(0, nx, na)?.reshape(a.shape())?;
        let db = grads.narrow(0, nx + na, b.elem_count())?.reshape(b.shape())?;
        let keep = |t: &Tensor, d: Tensor| t.track_op().then_some(d);
        Ok((keep(x, dx), keep(a, da), keep(b, db)))
    }
}

/// The backward pass as a forward-only op on (x, A, B), holding the output's gradient.
struct LoraGrad<'a> {
    fwd: &'a Lora,
    g: Tensor,
    /// The forward pass's `x A^T`, if still there.
    xa: Option<CpuStorage>,
    need_x: bool,
}

fn backward<T: Float>(
    (x, lx): (&CpuStorage, &Layout),
    (a, la): (&CpuStorage, &Layout),
    (b, lb): (&CpuStorage, &Layout),
    op: &LoraGrad,
) -> candle_core::Result<(CpuStorage, Shape)> {
    let d = Dims::of(lx, la, lb)?;
    let (x, a, b) = (slice::<T>(x, lx)?, slice::<T>(a, la)?, slice::<T>(b, lb)?);
    let (gs, gl) = op.g.storage_and_layout();
    let Storage::Cpu(gs) = &*gs else {
        return Err(candle_core::Error::Msg("lora backward: gradient not on the CPU".into()));
    };
    let g = rows(slice::<T>(gs, gl)?, d.n, d.dout);
    let scale = T::from(op.fwd.scale).unwrap_or_else(T::nan);
    let recomputed;
    let xa = match &op.xa {
        Some(kept) => kept.as_slice::<T>()?,
        None => {
            recomputed = down(x, a, d)?;
            &recomputed[..]
        }
    };
    let mut out = zeros::<T>(d.n * d.din + d.r * d.din + d.dout * d.r);
    let (dx, rest) = out.split_at_mut(d.n * d.din);
    let (da, db) = rest.split_at_mut(d.r * d.din);
    // g B s: [n, r]
    let mut gxa = zeros::<T>(d.n * d.r);
    gemm(
        rows(&mut gxa[..], d.n, d.r),
        rows(g.data, d.n, d.dout),
        rows(b, d.dout, d.r),
        scale,
        false,
    )?;
    gemm(rows(db, d.dout, d.r), rows(g.data, d.n, d.dout).t(), rows(xa, d.n, d.r), scale, false)?;
    gemm(rows(da, d.r, d.din), rows(&gxa[..], d.n, d.r).t(), rows(x, d.n, d.din), T::one(), false)?;
    if op.need_x {
        with_slice::<T, _>(&op.fwd.weight, "lora: weight", |w| {
            gemm(
                rows(&mut *dx, d.n, d.din),
                rows(g.data, d.n, d.dout),
                rows(w, d.dout, d.din),
                T::one(),
                false,
            )
        })?;
        gemm(rows(dx, d.n, d.din), rows(&gxa[..], d.n, d.r), rows(a, d.r, d.din), T::one(), true)?;
    }
    let len = out.len();
    Ok((T::to_cpu_storage_owned(out), Shape::from(len)))
}

impl CustomOp3 for LoraGrad<'_> {
    fn name(&self) -> &'static str {
        "braid-lora-grad"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        lx: &Layout,
        a: &CpuStorage,
        la: &Layout,
        b: &CpuStorage,
        lb: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        dispatch!(x, backward((x, lx), (a, la), (b, lb), self))
    }
}

#[cfg(test)]
mod tests {
    use braid_core::Result;
    use candle_core::{DType, Device, Tensor};

    use super::*;
    use crate::fused::testing::assert_same;

    fn composed(ts: &[Tensor], w: &Tensor, scale: f64) -> Result<Tensor> {
        let (x, a, b) = (&ts[0], &ts[1], &ts[2]);
        let up = x.matmul(&a.t()?)?.matmul(&b.t()?)?;
        Ok((x.matmul(&w.t()?)? + (up * scale)?)?)
    }

    #[test]
    fn same_values_and_gradients_as_the_composed_ops() -> Result<()> {
        let dev = Device::Cpu;
        for dtype in [DType::F64, DType::F32] {
            let tol = if dtype == DType::F64 { 1e-12 } else { 1e-5 };
            let (n, din, r, dout) = (7, 12, 3, 9);
            let w = Tensor::randn(0f64, 1., (dout, din), &dev)?.to_dtype(dtype)?;
            let inputs = [(n, din), (r, din), (dout, r)]
                .map(|s| Tensor::randn(0f64, 1., s, &dev).and_then(|t| t.to_dtype(dtype)));
            let inputs = inputs.into_iter().collect::<candle_core::Result<Vec<_>>>()?;
            assert_same(
                |ts| Ok(lora_linear(&ts[0], &w, &ts[1], &ts[2], 0.75)?),
                |ts| composed(ts, &w, 0.75),
                &inputs,
                tol,
            )?;
        }
        Ok(())
    }

    #[test]
    fn a_second_backward_recomputes_the_down_projection() -> Result<()> {
        let dev = Device::Cpu;
        let w = Tensor::randn(0f64, 1., (4, 5), &dev)?;
        let x = candle_core::Var::randn(0f64, 1., (3, 5), &dev)?;
        let a = candle_core::Var::randn(0f64, 1., (2, 5), &dev)?;
        let b = candle_core::Var::randn(0f64, 1., (4, 2), &dev)?;
        let loss = lora_linear(&x, &w, &a, &b, 2.0)?.sqr()?.sum_all()?;
        let (first, second) = (loss.backward()?, loss.backward()?);
        for v in [x.as_tensor(), a.as_tensor(), b.as_tensor()] {
            let none = || braid_core::Error::Invalid("no gradient".into());
            let (g1, g2) = (first.get(v).ok_or_else(none)?, second.get(v).ok_or_else(none)?);
            let d = (g1 - g2)?.abs()?.max_all()?.to_scalar::<f64>()?;
            assert!(d < 1e-12, "{d}");
        }
        Ok(())
    }

    #[test]
    fn mismatched_shapes_are_errors() -> Result<()> {
        let dev = Device::Cpu;
        let t = |s: (usize, usize)| Tensor::zeros(s, DType::F32, &dev);
        assert!(lora_linear(&t((2, 4))?, &t((3, 4))?, &t((2, 5))?, &t((3, 2))?, 1.0).is_err());
        assert!(lora_linear(&t((2, 4))?, &t((3, 4))?, &t((2, 4))?, &t((2, 2))?, 1.0).is_err());
        Ok(())
    }
}
