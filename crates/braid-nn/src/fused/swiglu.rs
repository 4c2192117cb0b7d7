//! SwiGLU's gate, `silu(gate) * up` (Shazeer 2020; LLaMA's MLP), as one kernel, and its
//! backward pass: `d_up = g silu(gate)`, `d_gate = g up s (1 + gate (1 - s))`, `s = sigmoid(gate)`;
//! and SiLU alone (`x s`, the diffusion UNet's activation), `dx = g s (1 + x (1 - s))`,
//! with the vectorised exp (candle's runs libm's per element and composes its backward).

use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Shape, Tensor};

use super::{dispatch, par_chunks, slice, zeros, Float};

/// gate, up: [..any] (same shape) -> [..any]
pub fn silu_mul(gate: &Tensor, up: &Tensor) -> candle_core::Result<Tensor> {
    if gate.dims() != up.dims() {
        return Err(candle_core::Error::Msg(format!(
            "silu_mul: gate {:?} vs up {:?}",
            gate.dims(),
            up.dims()
        )));
    }
    gate.contiguous()?.apply_op2(&up.contiguous()?, Forward)
}

/// `x sigmoid(x)`, any shape.
pub fn silu(x: &Tensor) -> candle_core::Result<Tensor> {
    x.contiguous()?.apply_op1(Silu)
}

struct Silu;

fn silu_forward<T: Float>(x: &CpuStorage, lx: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
    let x = slice::<T>(x, lx)?;
    let mut out = zeros::<T>(x.len());
    par_chunks(&mut out, |at, chunk| {
        for (o, &v) in chunk.iter_mut().zip(&x[at..]) {
            *o = v * v.sigmoid();
        }
    });
    Ok((T::to_cpu_storage_owned(out), lx.shape().clone()))
}

impl CustomOp1 for Silu {
    fn name(&self) -> &'static str {
        "braid-silu"
    }

    fn cpu_fwd(&self, x: &CpuStorage, lx: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        dispatch!(x, silu_forward(x, lx))
    }

    fn bwd(&self, x: &Tensor, _y: &Tensor, g: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(x.apply_op2_no_bwd(&g.contiguous()?, &SiluGrad)?))
    }
}

struct SiluGrad;

fn silu_grad<T: Float>(
    (x, lx): (&CpuStorage, &Layout),
    (g, lg): (&CpuStorage, &Layout),
) -> candle_core::Result<(CpuStorage, Shape)> {
    let (x, g) = (slice::<T>(x, lx)?, slice::<T>(g, lg)?);
    if x.len() != g.len() {
        return Err(candle_core::Error::Msg("silu: gradient of another shape".into()));
    }
    let mut out = zeros::<T>(x.len());
    par_chunks(&mut out, |at, chunk| {
        for ((o, &v), &gv) in chunk.iter_mut().zip(&x[at..]).zip(&g[at..]) {
            let s = v.sigmoid();
            *o = gv * s * (T::one() + v * (T::one() - s));
        }
    });
    Ok((T::to_cpu_storage_owned(out), lx.shape().clone()))
}

impl CustomOp2 for SiluGrad {
    fn name(&self) -> &'static str {
        "braid-silu-grad"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        lx: &Layout,
        g: &CpuStorage,
        lg: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        dispatch!(x, silu_grad((x, lx), (g, lg)))
    }
}

struct Forward;

fn forward<T: Float>(
    (a, la): (&CpuStorage, &Layout),
    (u, lu): (&CpuStorage, &Layout),
) -> candle_core::Result<(CpuStorage, Shape)> {
    let (a, u) = (slice::<T>(a, la)?, slice::<T>(u, lu)?);
    let mut out = zeros::<T>(a.len());
    par_chunks(&mut out, |at, chunk| {
        let n = chunk.len();
        for ((o, &x), &u) in chunk.iter_mut().zip(&a[at..at + n]).zip(&u[at..at + n]) {
            *o = x * x.sigmoid() * u;
        }
    });
    Ok((T::to_cpu_storage_owned(out), la.shape().clone()))
}

impl CustomOp2 for Forward {
    fn name(&self) -> &'static str {
        "braid-silu-mul"
    }

    fn cpu_fwd(
        &self,
        a: &CpuStorage,
        la: &Layout,
        u: &CpuStorage,
        lu: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        dispatch!(a, forward((a, la), (u, lu)))
    }

    fn bwd(
        &self,
        gate: &Tensor,
        up: &Tensor,
        _y: &Tensor,
        g: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let g = g.contiguous()?;
        let d_gate =
            gate.track_op().then(|| gate.apply_op3_no_bwd(up, &g, &GradGate)).transpose()?;
        // d_up = g silu(gate): the forward kernel itself, on (gate, g).
        let d_up = up.track_op().then(|| gate.apply_op2_no_bwd(&g, &Forward)).transpose()?;
        Ok((d_gate, d_up))
    }
}

struct GradGate;

fn grad_gate<T: Float>(
    (a, la): (&CpuStorage, &Layout),
    (u, lu): (&CpuStorage, &Layout),
    (g, lg): (&CpuStorage, &Layout),
) -> candle_core::Result<(CpuStorage, Shape)> {
    let (a, u, g) = (slice::<T>(a, la)?, slice::<T>(u, lu)?, slice::<T>(g, lg)?);
    let mut out = zeros::<T>(a.len());
    par_chunks(&mut out, |at, chunk| {
        let n = chunk.len();
        let inputs = a[at..at + n].iter().zip(&u[at..at + n]).zip(&g[at..at + n]);
        for (o, ((&x, &u), &g)) in chunk.iter_mut().zip(inputs) {
            let s = x.sigmoid();
            *o = g * u * s * (T::one() + x * (T::one() - s));
        }
    });
    Ok((T::to_cpu_storage_owned(out), la.shape().clone()))
}

impl CustomOp3 for GradGate {
    fn name(&self) -> &'static str {
        "braid-silu-mul-grad-gate"
    }

    fn cpu_fwd(
        &self,
        a: &CpuStorage,
        la: &Layout,
        u: &CpuStorage,
        lu: &Layout,
        g: &CpuStorage,
        lg: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        dispatch!(a, grad_gate((a, la), (u, lu), (g, lg)))
    }
}

#[cfg(test)]
mod tests {
    use braid_core::Result;
    use candle_core::{DType, Device, Tensor};

    use super::*;
    use crate::fused::testing::assert_same;

    #[test]
    fn same_values_and_gradients_as_composed_ops() -> Result<()> {
        for dtype in [DType::F64, DType::F32] {
            // More elements than one parallel chunk, so chunk offsets are exercised.
            let a = Tensor::randn(0f64, 3., (3, 7001), &Device::Cpu)?.to_dtype(dtype)?;
            let u = Tensor::randn(0f64, 1., (3, 7001), &Device::Cpu)?.to_dtype(dtype)?;
            let tol = if dtype == DType::F64 { 1e-12 } else { 1e-5 };
            assert_same(
                |ts| Ok(silu_mul(&ts[0], &ts[1])?),
                |ts| Ok((ts[0].silu()? * &ts[1])?),
                &[a.clone(), u],
                tol,
            )?;
            assert_same(|ts| Ok(silu(&ts[0])?), |ts| Ok(ts[0].silu()?), &[a], tol)?;
        }
        Ok(())
    }
}
