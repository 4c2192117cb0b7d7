//! Rotary position embedding in the LLaMA convention (non-interleaved halves,
//! `y = x cos + rotate_half(x) sin`) as one kernel, and its backward pass, the transposed
//! rotation (the opposite angle): `dx1 = g1 cos1 + g2 sin2`, `dx2 = g2 cos2 - g1 sin1`.

use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Shape, Tensor};

use super::{dispatch, par_rows, slice, zeros, Float};

/// x: [batch, heads, seq, head_dim]; cos, sin: [seq, head_dim] -> [batch, heads, seq, head_dim]
pub fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> candle_core::Result<Tensor> {
    let (_, _, t, d) = x.dims4()?;
    if cos.dims() != [t, d] || sin.dims() != [t, d] || d % 2 != 0 {
        return Err(candle_core::Error::Msg(format!(
            "rope: tables {:?} / {:?} for x {:?}",
            cos.dims(),
            sin.dims(),
            x.dims()
        )));
    }
    let table = |t: &Tensor| -> candle_core::Result<Arc<Vec<f64>>> {
        Ok(Arc::new(t.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?))
    };
    let op = Rotate { cos: table(cos)?, sin: table(sin)?, inverse: false };
    x.contiguous()?.apply_op1(op)
}

/// Rotates each `[seq, head_dim]` row by the tables' angles, or by their negatives.
struct Rotate {
    cos: Arc<Vec<f64>>,
    sin: Arc<Vec<f64>>,
    inverse: bool,
}

fn rotate<T: Float>(
    s: &CpuStorage,
    l: &Layout,
    op: &Rotate,
) -> candle_core::Result<(CpuStorage, Shape)> {
    let x = slice::<T>(s, l)?;
    let (_, _, seq, d) = l.shape().dims4()?;
    let conv = |v: &[f64]| v.iter().map(|&c| T::from(c).unwrap_or_else(T::nan)).collect::<Vec<T>>();
    let (cos, mut sin) = (conv(&op.cos), conv(&op.sin));
    let half = d / 2;
    if op.inverse {
        // The transpose of the rotation: each row's sine halves swapped and negated.
        for row in sin.chunks_exact_mut(d) {
            let (a, b) = row.split_at_mut(half);
            a.swap_with_slice(b);
            row.iter_mut().for_each(|v| *v = -*v);
        }
    }
    let mut out = zeros::<T>(x.len());
    par_rows(&mut out, d, |r, row| {
        let p = (r % seq) * d;
        let (c, sn) = (&cos[p..p + d], &sin[p..p + d]);
        let src = &x[r * d..(r + 1) * d];
        let (x1, x2) = src.split_at(half);
        let (o1, o2) = row.split_at_mut(half);
        for i in 0..half {
            o1[i] = x1[i] * c[i] - x2[i] * sn[i];
            o2[i] = x2[i] * c[half + i] + x1[i] * sn[half + i];
        }
    });
    Ok((T::to_cpu_storage_owned(out), l.shape().clone()))
}

impl CustomOp1 for Rotate {
    fn name(&self) -> &'static str {
        "braid-rope"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        dispatch!(s, rotate(s, l, self))
    }

    fn bwd(&self, _x: &Tensor, _y: &Tensor, g: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let back = Rotate { cos: self.cos.clone(), sin: self.sin.clone(), inverse: !self.inverse };
        Ok(Some(g.contiguous()?.apply_op1_no_bwd(&back)?))
    }
}

#[cfg(test)]
mod tests {
    use braid_core::Result;
    use candle_core::{DType, Device, Tensor, D};

    use super::*;
    use crate::fused::testing::assert_same;

    fn composed(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
        let half = x.dim(D::Minus1)? / 2;
        let rot = Tensor::cat(
            &[&x.narrow(D::Minus1, half, half)?.neg()?, &x.narrow(D::Minus1, 0, half)?],
            D::Minus1,
        )?;
        Ok((x.broadcast_mul(cos)? + rot.broadcast_mul(sin)?)?)
    }

    #[test]
    fn same_values_and_gradients_as_composed_ops() -> Result<()> {
        for dtype in [DType::F64, DType::F32] {
            let dev = Device::Cpu;
            let x = Tensor::randn(0f64, 1., (2, 3, 4, 8), &dev)?.to_dtype(dtype)?;
            // Distinct halves, so a kernel that assumed cos1 == cos2 would fail.
            let cos = Tensor::randn(0f64, 1., (4, 8), &dev)?.to_dtype(dtype)?;
            let sin = Tensor::randn(0f64, 1., (4, 8), &dev)?.to_dtype(dtype)?;
            let tol = if dtype == DType::F64 { 1e-12 } else { 1e-5 };
            assert_same(
                |ts| Ok(rope(&ts[0], &cos, &sin)?),
                |ts| composed(&ts[0], &cos, &sin),
                &[x],
                tol,
            )?;
        }
        Ok(())
    }
}
