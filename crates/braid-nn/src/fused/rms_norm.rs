//! RMSNorm, `y = x / sqrt(mean(x^2) + eps) * w` over the last dimension (Zhang & Sennrich
//! 2019; `transformers`' `LlamaRMSNorm`), with its backward pass:
//! `dx = r (g w) - x r^3 mean(g w x)`, `dw = sum over rows of g x r`, `r = 1 / rms(x)`.

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Shape, Tensor};

use super::{dispatch, par_rows, slice, zeros, Float};

/// x: [..., dim]; weight: [dim] -> [..., dim]
pub fn rms_norm(x: &Tensor, weight: &Tensor, eps: f64) -> candle_core::Result<Tensor> {
    x.contiguous()?.apply_op2(&weight.contiguous()?, Forward { eps })
}

fn width(l: &Layout) -> candle_core::Result<usize> {
    l.dims().last().copied().ok_or_else(|| candle_core::Error::Msg("rms_norm: a scalar".into()))
}

/// `1 / sqrt(mean(row^2) + eps)`.
fn inv_rms<T: Float>(row: &[T], eps: f64) -> T {
    let ms = row.iter().fold(0f64, |s, &v| {
        let v = <T as candle_core::WithDType>::to_f64(v);
        s + v * v
    }) / row.len().max(1) as f64;
    T::from(1.0 / (ms + eps).sqrt()).unwrap_or_else(T::nan)
}

struct Forward {
    eps: f64,
}

fn forward<T: Float>(
    x: &CpuStorage,
    lx: &Layout,
    w: &CpuStorage,
    lw: &Layout,
    eps: f64,
) -> candle_core::Result<(CpuStorage, Shape)> {
    let (x, w) = (slice::<T>(x, lx)?, slice::<T>(w, lw)?);
    let d = width(lx)?;
    if w.len() != d {
        return Err(candle_core::Error::Msg(format!("rms_norm: weight {} for width {d}", w.len())));
    }
    let mut out = zeros::<T>(x.len());
    par_rows(&mut out, d, |i, row| {
        let xr = &x[i * d..(i + 1) * d];
        let r = inv_rms(xr, eps);
        for ((o, &v), &wi) in row.iter_mut().zip(xr).zip(w) {
            *o = v * r * wi;
        }
    });
    Ok((T::to_cpu_storage_owned(out), lx.shape().clone()))
}

impl CustomOp2 for Forward {
    fn name(&self) -> &'static str {
        "braid-rms-norm"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        lx: &Layout,
        w: &CpuStorage,
        lw: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        dispatch!(x, forward(x, lx, w, lw, self.eps))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _y: &Tensor,
        g: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let g = g.contiguous()?;
        let gx = x.apply_op3_no_bwd(w, &g, &GradX { eps: self.eps })?;
        let gw = if w.track_op() {
            Some(x.apply_op2_no_bwd(&g, &GradW { eps: self.eps })?)
        } else {
            None
        };
        Ok((Some(gx), gw))
    }
}

struct GradX {
    eps: f64,
}

fn grad_x<T: Float>(
    (x, lx): (&CpuStorage, &Layout),
    (w, lw): (&CpuStorage, &Layout),
    (g, lg): (&CpuStorage, &Layout),
    eps: f64,
) -> candle_core::Result<(CpuStorage, Shape)> {
    let (x, w, g) = (slice::<T>(x, lx)?, slice::<T>(w, lw)?, slice::<T>(g, lg)?);
    let d = width(lx)?;
    let mut out = zeros::<T>(x.len());
    par_rows(&mut out, d, |i, row| {
        let (xr, gr) = (&x[i * d..(i + 1) * d], &g[i * d..(i + 1) * d]);
        let r = inv_rms(xr, eps);
        let dot = xr.iter().zip(gr).zip(w).fold(T::zero(), |s, ((&a, &b), &c)| s + a * b * c);
        let k = r * r * r * dot / T::from(d).unwrap_or_else(T::one);
        for (((o, &xv), &gv), &wv) in row.iter_mut().zip(xr).zip(gr).zip(w) {
            *o = r * gv * wv - xv * k;
        }
    });
    Ok((T::to_cpu_storage_owned(out), lx.shape().clone()))
}

impl CustomOp3 for GradX {
    fn name(&self) -> &'static str {
        "braid-rms-norm-grad-x"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        lx: &Layout,
        w: &CpuStorage,
        lw: &Layout,
        g: &CpuStorage,
        lg: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        dispatch!(x, grad_x((x, lx), (w, lw), (g, lg), self.eps))
    }
}

struct GradW {
    eps: f64,
}

fn grad_w<T: Float>(
    x: &CpuStorage,
    lx: &Layout,
    g: &CpuStorage,
    lg: &Layout,
    eps: f64,
) -> candle_core::Result<(CpuStorage, Shape)> {
    let (x, g) = (slice::<T>(x, lx)?, slice::<T>(g, lg)?);
    let d = width(lx)?;
    let mut out = zeros::<T>(d);
    for (xr, gr) in x.chunks_exact(d).zip(g.chunks_exact(d)) {
        let r = inv_rms(xr, eps);
        for ((o, &xv), &gv) in out.iter_mut().zip(xr).zip(gr) {
            *o += gv * xv * r;
        }
    }
    Ok((T::to_cpu_storage_owned(out), Shape::from(d)))
}

impl CustomOp2 for GradW {
    fn name(&self) -> &'static str {
        "braid-rms-norm-grad-w"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        lx: &Layout,
        g: &CpuStorage,
        lg: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        dispatch!(x, grad_w(x, lx, g, lg, self.eps))
    }
}

#[cfg(test)]
mod tests {
    use braid_core::Result;
    use candle_core::{DType, Device, Tensor, D};

    use super::*;
    use crate::fused::testing::assert_same;

    fn composed(ts: &[Tensor]) -> Result<Tensor> {
        let ms = ts[0].sqr()?.mean_keepdim(D::Minus1)?;
        Ok(ts[0].broadcast_div(&(ms + 1e-5)?.sqrt()?)?.broadcast_mul(&ts[1])?)
    }

    #[test]
    fn same_values_and_gradients_as_composed_ops() -> Result<()> {
        for dtype in [DType::F64, DType::F32] {
            let x = Tensor::randn(0f64, 2., (3, 5, 24), &Device::Cpu)?.to_dtype(dtype)?;
            let w = Tensor::randn(1f64, 0.5, 24, &Device::Cpu)?.to_dtype(dtype)?;
            let tol = if dtype == DType::F64 { 1e-12 } else { 1e-5 };
            assert_same(|ts| Ok(rms_norm(&ts[0], &ts[1], 1e-5)?), composed, &[x, w], tol)?;
        }
        Ok(())
    }
}
