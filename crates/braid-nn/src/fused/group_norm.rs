//! Group normalisation (Wu & He 2018; PyTorch's `F.group_norm`): per image and group of
//! channels, `x^ = (x - mean) / sqrt(var + eps)` over the group's channels and positions
//! (biased variance), `y = x^ w_c + b_c`; with its backward pass
//! `dx = r (g w - mean(g w) - x^ mean(g w x^))`, `dw_c = sum g x^`, `db_c = sum g`, the
//! means over the group (PyTorch's `aten/src/ATen/native/cpu/group_norm_kernel.cpp`).

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Shape, Tensor};
use rayon::prelude::*;

use super::{dispatch, slice, zeros, Float};

/// x: `[batch, channels, ...]`; weight, bias: `[channels]` -> the shape of x.
pub fn group_norm(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    groups: usize,
    eps: f64,
) -> candle_core::Result<Tensor> {
    let dims = x.dims();
    let c = weight.elem_count();
    if dims.len() < 2 || dims[1] != c || bias.elem_count() != c || groups == 0 || c % groups != 0 {
        return Err(candle_core::Error::Msg(format!(
            "group_norm: input {dims:?} with {c} weights, {} biases, {groups} groups",
            bias.elem_count()
        )));
    }
    let op = Norm { groups, channels: c, eps };
    x.contiguous()?.apply_op3(&weight.contiguous()?, &bias.contiguous()?, op)
}

#[derive(Debug, Clone, Copy)]
struct Norm {
    groups: usize,
    channels: usize,
    eps: f64,
}

impl Norm {
    /// Elements of one channel (the product of the dimensions after it).
    fn positions(&self, len: usize, batch: usize) -> usize {
        len / (batch * self.channels).max(1)
    }

    /// `(mean, 1 / sqrt(var + eps))` of one group's elements, in f64.
    fn stats<T: Float>(&self, xs: &[T]) -> (f64, f64) {
        let n = xs.len().max(1) as f64;
        let mean = xs.iter().fold(0f64, |s, &v| s + f64_of(v)) / n;
        let var = xs.iter().fold(0f64, |s, &v| {
            let d = f64_of(v) - mean;
            s + d * d
        }) / n;
        (mean, 1.0 / (var + self.eps).sqrt())
    }
}

/// `v` in f64.
#[inline(always)]
fn f64_of<T: Float>(v: T) -> f64 {
    <T as candle_core::WithDType>::to_f64(v)
}

fn batch_of(l: &Layout) -> candle_core::Result<usize> {
    l.dims().first().copied().ok_or_else(|| candle_core::Error::Msg("group_norm: a scalar".into()))
}

fn forward<T: Float>(
    (x, lx): (&CpuStorage, &Layout),
    (w, lw): (&CpuStorage, &Layout),
    (b, lb): (&CpuStorage, &Layout),
    op: Norm,
) -> candle_core::Result<(CpuStorage, Shape)> {
    let (x, w, b) = (slice::<T>(x, lx)?, slice::<T>(w, lw)?, slice::<T>(b, lb)?);
    let s = op.positions(x.len(), batch_of(lx)?);
    let cpg = op.channels / op.groups;
    let mut out = zeros::<T>(x.len());
    out.par_chunks_mut(cpg * s).zip(x.par_chunks(cpg * s)).enumerate().for_each(|(i, (y, xs))| {
        let (mean, r) = op.stats(xs);
        let (mean, r) = (T::from(mean).unwrap_or_else(T::nan), T::from(r).unwrap_or_else(T::nan));
        let c0 = (i % op.groups) * cpg;
        for (j, (yc, xc)) in y.chunks_exact_mut(s).zip(xs.chunks_exact(s)).enumerate() {
            let (wc, bc) = (w[c0 + j], b[c0 + j]);
            for (o, &v) in yc.iter_mut().zip(xc) {
                *o = (v - mean) * r * wc + bc;
            }
        }
    });
    Ok((T::to_cpu_storage_owned(out), lx.shape().clone()))
}

impl CustomOp3 for Norm {
    fn name(&self) -> &'static str {
        "braid-group-norm"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        lx: &Layout,
        w: &CpuStorage,
        lw: &Layout,
        b: &CpuStorage,
        lb: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        dispatch!(x, forward((x, lx), (w, lw), (b, lb), *self))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        _y: &Tensor,
        g: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let g = g.contiguous()?;
        let gx = if x.track_op() { Some(x.apply_op3_no_bwd(w, &g, &GradX(*self))?) } else { None };
        let (gw, gb) = if w.track_op() || b.track_op() {
            // [2, channels]: the weight's gradient, then the bias's.
            let both = x.apply_op2_no_bwd(&g, &GradAffine(*self))?;
            (
                w.track_op().then(|| both.get(0)).transpose()?,
                b.track_op().then(|| both.get(1)).transpose()?,
            )
        } else {
            (None, None)
        };
        Ok((gx, gw, gb))
    }
}

struct GradX(Norm);

fn grad_x<T: Float>(
    (x, lx): (&CpuStorage, &Layout),
    (w, lw): (&CpuStorage, &Layout),
    (g, lg): (&CpuStorage, &Layout),
    op: Norm,
) -> candle_core::Result<(CpuStorage, Shape)> {
    let (x, w, g) = (slice::<T>(x, lx)?, slice::<T>(w, lw)?, slice::<T>(g, lg)?);
    let s = op.positions(x.len(), batch_of(lx)?);
    let cpg = op.channels / op.groups;
    let n = (cpg * s).max(1) as f64;
    let mut out = zeros::<T>(x.len());
    out.par_chunks_mut(cpg * s)
        .zip(x.par_chunks(cpg * s).zip(g.par_chunks(cpg * s)))
        .enumerate()
        .for_each(|(i, (dx, (xs, gs)))| {
            let (mean, r) = op.stats(xs);
            let c0 = (i % op.groups) * cpg;
            // mean(g w) and mean(g w x^) over the group, in f64.
            let (mut m1, mut m2) = (0f64, 0f64);
            for (j, (xc, gc)) in xs.chunks_exact(s).zip(gs.chunks_exact(s)).enumerate() {
                let wc = f64_of(w[c0 + j]);
                for (&v, &gv) in xc.iter().zip(gc) {
                    let gw = f64_of(gv) * wc;
                    m1 += gw;
                    m2 += gw * (f64_of(v) - mean) * r;
                }
            }
            let (m1, m2) = (m1 / n, m2 / n);
            let t = |v: f64| T::from(v).unwrap_or_else(T::nan);
            let (mean_t, r_t, m1_t, m2_t) = (t(mean), t(r), t(m1), t(m2));
            for (j, ((dc, xc), gc)) in
                dx.chunks_exact_mut(s).zip(xs.chunks_exact(s)).zip(gs.chunks_exact(s)).enumerate()
            {
                let wc = w[c0 + j];
                for ((o, &v), &gv) in dc.iter_mut().zip(xc).zip(gc) {
                    let xh = (v - mean_t) * r_t;
                    *o = r_t * (gv * wc - m1_t - xh * m2_t);
                }
            }
        });
    Ok((T::to_cpu_storage_owned(out), lx.shape().clone()))
}

impl CustomOp3 for GradX {
    fn name(&self) -> &'static str {
        "braid-group-norm-grad-x"
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
        dispatch!(x, grad_x((x, lx), (w, lw), (g, lg), self.0))
    }
}

/// `[2, channels]`: `sum g x^` and `sum g` per channel over the batch and positions.
struct GradAffine(Norm);

fn grad_affine<T: Float>(
    (x, lx): (&CpuStorage, &Layout),
    (g, lg): (&CpuStorage, &Layout),
    op: Norm,
) -> candle_core::Result<(CpuStorage, Shape)> {
    let (x, g) = (slice::<T>(x, lx)?, slice::<T>(g, lg)?);
    let c = op.channels;
    let s = op.positions(x.len(), batch_of(lx)?);
    let cpg = c / op.groups;
    // Each (image, group) block's per-channel sums, then added over the images.
    let blocks: Vec<Vec<(f64, f64)>> = x
        .par_chunks(cpg * s)
        .zip(g.par_chunks(cpg * s))
        .map(|(xs, gs)| {
            let (mean, r) = op.stats(xs);
            xs.chunks_exact(s)
                .zip(gs.chunks_exact(s))
                .map(|(xc, gc)| {
                    xc.iter().zip(gc).fold((0f64, 0f64), |(a, b), (&v, &gv)| {
                        let gv = f64_of(gv);
                        (a + gv * (f64_of(v) - mean) * r, b + gv)
                    })
                })
                .collect()
        })
        .collect();
    let mut sums = vec![(0f64, 0f64); c];
    for (i, block) in blocks.iter().enumerate() {
        let c0 = (i % op.groups) * cpg;
        for (j, &(a, b)) in block.iter().enumerate() {
            sums[c0 + j].0 += a;
            sums[c0 + j].1 += b;
        }
    }
    let out: Vec<T> = sums
        .iter()
        .map(|p| p.0)
        .chain(sums.iter().map(|p| p.1))
        .map(|v| T::from(v).unwrap_or_else(T::nan))
        .collect();
    Ok((T::to_cpu_storage_owned(out), Shape::from((2, c))))
}

impl CustomOp2 for GradAffine {
    fn name(&self) -> &'static str {
        "braid-group-norm-grad-affine"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        lx: &Layout,
        g: &CpuStorage,
        lg: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        dispatch!(x, grad_affine((x, lx), (g, lg), self.0))
    }
}

#[cfg(test)]
mod tests {
    use braid_core::Result;
    use candle_core::{DType, Device, Tensor, D};

    use super::*;
    use crate::fused::testing::assert_same;

    /// The composed ops `GroupNorm` ran before (`group_norm.rs`).
    fn composed(ts: &[Tensor], groups: usize) -> Result<Tensor> {
        let dims = ts[0].dims().to_vec();
        let grouped = ts[0].reshape((dims[0], groups, ()))?;
        let centred = grouped.broadcast_sub(&grouped.mean_keepdim(D::Minus1)?)?;
        let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
        let normed = centred.broadcast_div(&(var + 1e-5)?.sqrt()?)?.reshape(dims.as_slice())?;
        let mut affine = vec![1usize; dims.len()];
        affine[1] = dims[1];
        Ok(normed
            .broadcast_mul(&ts[1].reshape(affine.as_slice())?)?
            .broadcast_add(&ts[2].reshape(affine.as_slice())?)?)
    }

    #[test]
    fn same_values_and_gradients_as_composed_ops() -> Result<()> {
        for dtype in [DType::F64, DType::F32] {
            for (shape, groups) in [(vec![2, 6, 5, 4], 3), (vec![3, 4, 7], 4), (vec![2, 8], 2)] {
                let c = shape[1];
                let x =
                    Tensor::randn(0.5f64, 2., shape.as_slice(), &Device::Cpu)?.to_dtype(dtype)?;
                let w = Tensor::randn(1f64, 0.5, c, &Device::Cpu)?.to_dtype(dtype)?;
                let b = Tensor::randn(0f64, 0.5, c, &Device::Cpu)?.to_dtype(dtype)?;
                let tol = if dtype == DType::F64 { 1e-12 } else { 1e-5 };
                assert_same(
                    |ts| Ok(group_norm(&ts[0], &ts[1], &ts[2], groups, 1e-5)?),
                    |ts| composed(ts, groups),
                    &[x, w, b],
                    tol,
                )?;
            }
        }
        Ok(())
    }

    #[test]
    fn channels_that_do_not_split_into_the_groups_are_an_error() -> Result<()> {
        let x = Tensor::zeros((1, 6, 4), DType::F32, &Device::Cpu)?;
        let w = Tensor::ones(6, DType::F32, &Device::Cpu)?;
        assert!(group_norm(&x, &w, &w, 4, 1e-5).is_err());
        assert!(group_norm(&x, &w.narrow(0, 0, 5)?, &w, 3, 1e-5).is_err());
        Ok(())
    }
}
