//! 2-D convolution (square kernel, zero padding, any stride; PyTorch's `F.conv2d` with
//! dilation 1 and one group) as im2col and one matrix product per image, with its backward
//! pass: `dW = sum_b g_b cols_b^T` and `dx = col2im(W^T g_b)`.
//!
//! The pattern is PyTorch's CPU "slow" convolution (`aten/src/ATen/native/ConvolutionMM2d.cpp`:
//! unfold, gemm; for the input gradient gemm then fold). candle's own backward is a direct
//! transposed convolution, and the layers had composed im2col from nine shifted copies of
//! the input, each with its own backward; a strided convolution was the dense one
//! subsampled. Here each image's columns are built once per pass, straight from the input.

use std::borrow::Cow;

use candle_core::{CpuStorage, CustomOp2, Layout, Shape, Tensor};
use rayon::prelude::*;

use super::gemm::{gemm, product, rows};
use super::{dispatch, slice, zeros, Float};

/// x: `[batch, in, h, w]`; weight: `[out, in, k, k]` -> `[batch, out, h', w']` with
/// `h' = (h + 2 padding - k) / stride + 1`.
pub fn conv2d(
    x: &Tensor,
    weight: &Tensor,
    padding: usize,
    stride: usize,
) -> candle_core::Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    let (o, cw, k, k2) = weight.dims4()?;
    if cw != c || k != k2 || k == 0 || stride == 0 {
        return Err(candle_core::Error::Msg(format!(
            "conv2d: input [{b}, {c}, {h}, {w}] with weight [{o}, {cw}, {k}, {k2}], stride {stride}"
        )));
    }
    if h + 2 * padding < k || w + 2 * padding < k {
        return Err(candle_core::Error::Msg(format!(
            "conv2d: a {h}x{w} input (padding {padding}) is smaller than the {k}x{k} kernel"
        )));
    }
    let geo = Geometry { b, c, h, w, o, k, padding, stride };
    x.contiguous()?.apply_op2(&weight.contiguous()?, Forward(geo))
}

/// The sizes of one convolution.
#[derive(Debug, Clone, Copy)]
struct Geometry {
    b: usize,
    c: usize,
    h: usize,
    w: usize,
    o: usize,
    k: usize,
    padding: usize,
    stride: usize,
}

impl Geometry {
    fn out_hw(&self) -> (usize, usize) {
        let (p, s, k) = (self.padding, self.stride, self.k);
        ((self.h + 2 * p - k) / s + 1, (self.w + 2 * p - k) / s + 1)
    }

    /// Rows of one image's columns: `in * k * k`, ordered as the weight's `[in, k, k]`.
    fn col_rows(&self) -> usize {
        self.c * self.k * self.k
    }

    fn positions(&self) -> usize {
        let (ho, wo) = self.out_hw();
        ho * wo
    }

    fn image(&self) -> usize {
        self.c * self.h * self.w
    }

    /// For column row `r` (input channel, kernel row, kernel column) and output row `oy`:
    /// the input row it reads (`None` in the padding), and the output columns
    /// `lo..hi` that fall inside the input (column `ox` reads input column
    /// `ox * stride + kx - padding`).
    #[inline]
    fn taps(&self, r: usize, oy: usize) -> (usize, Option<usize>, usize, usize, usize) {
        let (ci, kk) = (r / (self.k * self.k), r % (self.k * self.k));
        let (ky, kx) = (kk / self.k, kk % self.k);
        let (_, wo) = self.out_hw();
        let (p, s) = (self.padding, self.stride);
        let row = (oy * s + ky)
            .checked_sub(p)
            .filter(|&y| y < self.h)
            .map(|y| (ci * self.h + y) * self.w);
        let lo = if kx >= p { 0 } else { (p - kx).div_ceil(s) }.min(wo);
        let hi = (self.w + p).saturating_sub(kx).div_ceil(s).clamp(lo, wo);
        (kx, row, lo, hi, wo)
    }

    /// Whether the columns are the image itself (a 1x1 kernel, stride 1, no padding).
    fn identity(&self) -> bool {
        self.k == 1 && self.stride == 1 && self.padding == 0
    }

    /// One image's columns `[in k k, h' w']`: the image itself where the kernel is 1x1 at
    /// stride 1 without padding, else unfolded.
    fn columns<'a, T: Float>(&self, img: &'a [T]) -> Cow<'a, [T]> {
        if self.identity() {
            Cow::Borrowed(img)
        } else {
            Cow::Owned(self.unfold(img))
        }
    }

    /// One image's columns `[in k k, h' w']` (im2col).
    fn unfold<T: Float>(&self, img: &[T]) -> Vec<T> {
        let (ho, _) = self.out_hw();
        let n = self.positions();
        let mut cols = zeros::<T>(self.col_rows() * n);
        let (p, s) = (self.padding, self.stride);
        for (r, row) in cols.chunks_exact_mut(n).enumerate() {
            for oy in 0..ho {
                let (kx, src, lo, hi, wo) = self.taps(r, oy);
                let Some(src) = src else { continue };
                let dst = &mut row[oy * wo + lo..oy * wo + hi];
                let first = src + lo * s + kx - p;
                if s == 1 {
                    dst.copy_from_slice(&img[first..first + dst.len()]);
                } else {
                    for (j, v) in dst.iter_mut().enumerate() {
                        *v = img[first + j * s];
                    }
                }
            }
        }
        cols
    }

    /// Adds one image's column gradients back onto its pixels (col2im, the transpose of
    /// [`Geometry::unfold`]).
    fn fold<T: Float>(&self, cols: &[T], img: &mut [T]) {
        let (ho, _) = self.out_hw();
        let n = self.positions();
        let (p, s) = (self.padding, self.stride);
        for (r, row) in cols.chunks_exact(n).enumerate() {
            for oy in 0..ho {
                let (kx, src, lo, hi, wo) = self.taps(r, oy);
                let Some(src) = src else { continue };
                let first = src + lo * s + kx - p;
                for (j, &v) in row[oy * wo + lo..oy * wo + hi].iter().enumerate() {
                    img[first + j * s] += v;
                }
            }
        }
    }
}

/// An error naming the buffer unless it holds `want` elements.
fn check_len(what: &str, got: usize, want: usize) -> candle_core::Result<()> {
    if got == want {
        Ok(())
    } else {
        Err(candle_core::Error::Msg(format!("conv2d: {what} holds {got} elements, not {want}")))
    }
}

struct Forward(Geometry);

fn forward<T: Float>(
    (x, lx): (&CpuStorage, &Layout),
    (wt, lw): (&CpuStorage, &Layout),
    g: Geometry,
) -> candle_core::Result<(CpuStorage, Shape)> {
    let (x, wt) = (slice::<T>(x, lx)?, slice::<T>(wt, lw)?);
    check_len("input", x.len(), g.b * g.image())?;
    check_len("weight", wt.len(), g.o * g.col_rows())?;
    let (ho, wo) = g.out_hw();
    let n = g.positions();
    let mut out = zeros::<T>(g.b * g.o * n);
    out.par_chunks_mut(g.o * n).zip(x.par_chunks(g.image())).try_for_each(|(y, img)| {
        let cols = g.columns(img);
        gemm(
            rows(y, g.o, n),
            rows(wt, g.o, g.col_rows()),
            rows(&cols[..], g.col_rows(), n),
            T::one(),
            false,
        )
    })?;
    Ok((T::to_cpu_storage_owned(out), Shape::from((g.b, g.o, ho, wo))))
}

impl CustomOp2 for Forward {
    fn name(&self) -> &'static str {
        "braid-conv2d"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        lx: &Layout,
        w: &CpuStorage,
        lw: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        dispatch!(x, forward((x, lx), (w, lw), self.0))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _y: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let gx = if x.track_op() { Some(w.apply_op2_no_bwd(&grad, &GradX(self.0))?) } else { None };
        let gw = if w.track_op() { Some(x.apply_op2_no_bwd(&grad, &GradW(self.0))?) } else { None };
        Ok((gx, gw))
    }
}

/// `dx`: per image, `W^T g` `[in k k, h' w']` folded back onto `[in, h, w]`.
struct GradX(Geometry);

fn grad_x<T: Float>(
    (wt, lw): (&CpuStorage, &Layout),
    (gr, lg): (&CpuStorage, &Layout),
    g: Geometry,
) -> candle_core::Result<(CpuStorage, Shape)> {
    let (wt, gr) = (slice::<T>(wt, lw)?, slice::<T>(gr, lg)?);
    let n = g.positions();
    check_len("output gradient", gr.len(), g.b * g.o * n)?;
    let mut out = zeros::<T>(g.b * g.image());
    out.par_chunks_mut(g.image()).zip(gr.par_chunks(g.o * n)).try_for_each(|(img, gy)| {
        let wt_t = rows(wt, g.o, g.col_rows()).t();
        if g.identity() {
            return gemm(rows(img, g.col_rows(), n), wt_t, rows(gy, g.o, n), T::one(), false);
        }
        let cols = product(wt_t, rows(gy, g.o, n), T::one())?;
        g.fold(&cols, img);
        Ok(())
    })?;
    Ok((T::to_cpu_storage_owned(out), Shape::from((g.b, g.c, g.h, g.w))))
}

impl CustomOp2 for GradX {
    fn name(&self) -> &'static str {
        "braid-conv2d-grad-x"
    }

    fn cpu_fwd(
        &self,
        w: &CpuStorage,
        lw: &Layout,
        g: &CpuStorage,
        lg: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        dispatch!(w, grad_x((w, lw), (g, lg), self.0))
    }
}

/// `dW = sum over images of g_b cols_b^T`: the images' partial sums in parallel, then added.
struct GradW(Geometry);

fn grad_w<T: Float>(
    (x, lx): (&CpuStorage, &Layout),
    (gr, lg): (&CpuStorage, &Layout),
    g: Geometry,
) -> candle_core::Result<(CpuStorage, Shape)> {
    let (x, gr) = (slice::<T>(x, lx)?, slice::<T>(gr, lg)?);
    let n = g.positions();
    check_len("input", x.len(), g.b * g.image())?;
    check_len("output gradient", gr.len(), g.b * g.o * n)?;
    let size = g.o * g.col_rows();
    // Split the batch into one run of images per thread; each sums its own partial dW.
    let parts = rayon::current_num_threads().clamp(1, g.b.max(1));
    let per = g.b.div_ceil(parts).max(1);
    let partials = (0..g.b)
        .step_by(per)
        .collect::<Vec<_>>()
        .into_par_iter()
        .map(|b0| {
            let mut dw = zeros::<T>(size);
            for i in b0..(b0 + per).min(g.b) {
                let img = &x[i * g.image()..(i + 1) * g.image()];
                let gy = rows(&gr[i * g.o * n..(i + 1) * g.o * n], g.o, n);
                let cols = g.columns(img);
                let cols_t = rows(&cols[..], g.col_rows(), n).t();
                gemm(rows(&mut dw[..], g.o, g.col_rows()), gy, cols_t, T::one(), true)?;
            }
            Ok(dw)
        })
        .collect::<candle_core::Result<Vec<_>>>()?;
    let mut parts = partials.into_iter();
    let mut dw = parts.next().unwrap_or_else(|| zeros::<T>(size));
    for p in parts {
        for (a, b) in dw.iter_mut().zip(p) {
            *a += b;
        }
    }
    Ok((T::to_cpu_storage_owned(dw), Shape::from((g.o, g.c, g.k, g.k))))
}

impl CustomOp2 for GradW {
    fn name(&self) -> &'static str {
        "braid-conv2d-grad-w"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        lx: &Layout,
        g: &CpuStorage,
        lg: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        dispatch!(x, grad_w((x, lx), (g, lg), self.0))
    }
}

#[cfg(test)]
mod tests {
    use braid_core::Result;
    use candle_core::{DType, Device, Tensor};

    use super::*;
    use crate::fused::testing::assert_same;

    /// candle's direct convolution, strided by keeping every stride-th output of the dense
    /// one (candle's own strided backward drops rows, see `conv2d.rs`).
    fn composed(ts: &[Tensor], padding: usize, stride: usize) -> Result<Tensor> {
        let mut y = ts[0].conv2d(&ts[1], padding, 1, 1, 1)?;
        for dim in [2, 3] {
            let keep: Vec<u32> = (0..y.dim(dim)? as u32).step_by(stride).collect();
            y = y.index_select(&Tensor::new(keep.as_slice(), y.device())?, dim)?;
        }
        Ok(y)
    }

    #[test]
    fn same_values_and_gradients_as_candle_s_convolution() -> Result<()> {
        // (in, out, size, kernel, padding, stride): the UNet's and VAE's convolutions, a 1x1
        // shortcut, an odd size under stride 2, and kernels as large as the padded input.
        let cases = [
            (3, 4, 8, 3, 1, 1),
            (4, 5, 9, 3, 1, 2),
            (4, 6, 8, 3, 0, 2),
            (5, 3, 7, 1, 0, 1),
            (2, 3, 5, 5, 0, 1),
            (3, 2, 6, 4, 1, 3),
            (2, 2, 3, 7, 2, 1),
        ];
        for dtype in [DType::F64, DType::F32] {
            for (c, o, s, k, p, st) in cases {
                let x = Tensor::randn(0f64, 1., (2, c, s, s + 1), &Device::Cpu)?.to_dtype(dtype)?;
                let w = Tensor::randn(0f64, 0.5, (o, c, k, k), &Device::Cpu)?.to_dtype(dtype)?;
                let tol = if dtype == DType::F64 { 1e-12 } else { 1e-5 };
                assert_same(
                    |ts| Ok(conv2d(&ts[0], &ts[1], p, st)?),
                    |ts| composed(ts, p, st),
                    &[x, w],
                    tol,
                )?;
            }
        }
        Ok(())
    }

    #[test]
    fn mismatched_shapes_are_errors() -> Result<()> {
        let x = Tensor::zeros((1, 3, 4, 4), DType::F32, &Device::Cpu)?;
        let w = Tensor::zeros((2, 4, 3, 3), DType::F32, &Device::Cpu)?;
        assert!(conv2d(&x, &w, 1, 1).is_err(), "3 input channels against a 4-channel weight");
        let w = Tensor::zeros((2, 3, 7, 7), DType::F32, &Device::Cpu)?;
        assert!(conv2d(&x, &w, 1, 1).is_err(), "a 7x7 kernel over a padded 6x6 input");
        let w = Tensor::zeros((2, 3, 3, 3), DType::F32, &Device::Cpu)?;
        assert!(conv2d(&x, &w, 1, 0).is_err(), "stride 0");
        Ok(())
    }
}
