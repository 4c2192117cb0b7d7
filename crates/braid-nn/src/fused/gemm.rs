//! A bounds-checked entry into the `gemm` crate's kernels (the ones candle's CPU matmul
//! runs), for products written into part of a buffer or added onto it (candle's matmul
//! always returns a fresh tensor, so `y += a b` is a product, an allocation and an add),
//! threaded by output columns.

use gemm::Parallelism;
use rayon::prelude::*;

use super::Float;

/// A strided matrix view: element `(i, j)` at `data[i * rs + j * cs]`.
pub(crate) struct Mat<S> {
    pub data: S,
    pub rows: usize,
    pub cols: usize,
    pub rs: usize,
    pub cs: usize,
}

impl<S> Mat<S> {
    /// The last index the view reads or writes, plus one (0 when empty).
    fn extent(&self) -> usize {
        if self.rows == 0 || self.cols == 0 {
            0
        } else {
            (self.rows - 1) * self.rs + (self.cols - 1) * self.cs + 1
        }
    }
}

/// A row-major `[rows, cols]` view of `data`.
pub(crate) fn rows<S>(data: S, rows: usize, cols: usize) -> Mat<S> {
    Mat { data, rows, cols, rs: cols, cs: 1 }
}

impl<S> Mat<S> {
    /// The transposed view (no copy).
    pub(crate) fn t(self) -> Self {
        Mat { data: self.data, rows: self.cols, cols: self.rows, rs: self.cs, cs: self.rs }
    }
}

/// `dst = scale * lhs rhs`, or `dst += scale * lhs rhs` with `accumulate`, on rayon's pool.
/// The same kernels as candle's CPU matmul, threaded differently (see the body).
///
/// Panics never: mismatched sizes or views past their buffers are errors.
pub(crate) fn gemm<T: Float>(
    dst: Mat<&mut [T]>,
    lhs: Mat<&[T]>,
    rhs: Mat<&[T]>,
    scale: T,
    accumulate: bool,
) -> candle_core::Result<()> {
    let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols);
    if rhs.rows != k || dst.rows != m || dst.cols != n {
        return Err(candle_core::Error::Msg(format!(
            "gemm: [{m}, {k}] x [{}, {n}] into [{}, {}]",
            rhs.rows, dst.rows, dst.cols
        )));
    }
    if dst.extent() > dst.data.len()
        || lhs.extent() > lhs.data.len()
        || rhs.extent() > rhs.data.len()
    {
        return Err(candle_core::Error::Msg("gemm: a view reaches past its buffer".into()));
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                for j in 0..n {
                    dst.data[i * dst.rs + j * dst.cs] = T::zero();
                }
            }
        }
        return Ok(());
    }
    run(dst.data.as_mut_ptr(), (dst.rs, dst.cs), &lhs, &rhs, scale, accumulate);
    Ok(())
}

/// The product into `dst` (strides `(rs, cs)`), the sizes and extents already checked.
fn run<T: Float>(
    dst: *mut T,
    (d_rs, d_cs): (usize, usize),
    lhs: &Mat<&[T]>,
    rhs: &Mat<&[T]>,
    scale: T,
    accumulate: bool,
) {
    let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols);
    // Split the output's columns over the pool, one single-threaded product per part. The
    // crate's own threading (what candle's matmul uses) splits each product's packing and
    // blocks across threads with a barrier between them; at training shapes ([64..800] rows
    // against a 576..49152-wide weight) a split by columns ran as fast or up to 2.2x faster
    // on 2 cores (`cargo run --release -p braid-nn --example gemm_speed`), each thread
    // packing only its own part of the right-hand side.
    let threads = rayon::current_num_threads().max(1);
    let parts = if m * n * k < 1 << 18 { 1 } else { threads.min(n.div_ceil(16)).max(1) };
    let width = n.div_ceil(parts).next_multiple_of(16).min(n);
    let (dst_ptr, lhs_ptr, rhs_ptr) =
        (dst as usize, lhs.data.as_ptr() as usize, rhs.data.as_ptr() as usize);
    let (d_rs, d_cs, l_rs, l_cs, r_rs, r_cs) = (d_rs, d_cs, lhs.rs, lhs.cs, rhs.rs, rhs.cs);
    let part = |j0: usize| {
        let cols = width.min(n - j0);
        let stride = |s: usize| s as isize;
        // SAFETY: the callers checked that every index the kernel touches, `(i, j) ->
        // i * rs + j * cs` for i < rows and j < cols, lies inside each buffer, and that `dst`
        // is exclusively theirs (it aliases neither `lhs` nor `rhs`); part `j0` reads and
        // writes only the columns `j0..j0 + cols` of `dst` (and reads those of `rhs`), so
        // the parts running at once write disjoint elements.
        #[allow(unsafe_code)]
        unsafe {
            gemm::gemm(
                m,
                cols,
                k,
                (dst_ptr as *mut T).add(j0 * d_cs),
                stride(d_cs),
                stride(d_rs),
                accumulate,
                lhs_ptr as *const T,
                stride(l_cs),
                stride(l_rs),
                (rhs_ptr as *const T).add(j0 * r_cs),
                stride(r_cs),
                stride(r_rs),
                T::one(),
                scale,
                false,
                false,
                false,
                Parallelism::None,
            );
        }
    };
    if parts == 1 {
        part(0);
    } else {
        (0..n).step_by(width).collect::<Vec<_>>().into_par_iter().for_each(part);
    }
}

/// `scale * lhs rhs` as a new row-major `[m, n]` buffer that the kernel writes once, with no
/// zero fill before it (the fills were ~4% of a training step).
pub(crate) fn product<T: Float>(
    lhs: Mat<&[T]>,
    rhs: Mat<&[T]>,
    scale: T,
) -> candle_core::Result<Vec<T>> {
    let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols);
    if rhs.rows != k {
        return Err(candle_core::Error::Msg(format!("gemm: [{m}, {k}] x [{}, {n}]", rhs.rows)));
    }
    if m == 0 || n == 0 || k == 0 {
        let mut out = super::zeros(m * n);
        gemm(rows(&mut out[..], m, n), lhs, rhs, scale, false)?;
        return Ok(out);
    }
    if lhs.extent() > lhs.data.len() || rhs.extent() > rhs.data.len() {
        return Err(candle_core::Error::Msg("gemm: a view reaches past its buffer".into()));
    }
    let mut out = Vec::<T>::with_capacity(m * n);
    // The kernel writes through the spare capacity, row-major [m, n]: within `m * n`.
    run(out.spare_capacity_mut().as_mut_ptr().cast::<T>(), (n, 1), &lhs, &rhs, scale, false);
    // SAFETY: with `read_dst` false and k > 0 the kernel stores every element of the
    // [m, n] destination (its edge tiles masked), so the first `m * n` are initialised.
    #[allow(unsafe_code)]
    unsafe {
        out.set_len(m * n);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn products_sums_and_transposed_views() {
        // a [2, 3], b [3, 2]
        let a = [1f64, 2., 3., 4., 5., 6.];
        let b = [1f64, 0., 0., 1., 1., 1.];
        let mut y = [10f64; 4];
        gemm(rows(&mut y[..], 2, 2), rows(&a[..], 2, 3), rows(&b[..], 3, 2), 1.0, false).unwrap();
        let same = |a: &[f64], b: &[f64]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-12);
        assert!(same(&y, &[4., 5., 10., 11.]));
        gemm(rows(&mut y[..], 2, 2), rows(&a[..], 2, 3), rows(&b[..], 3, 2), 0.5, true).unwrap();
        assert!(same(&y, &[6., 7.5, 15., 16.5]));
        // a^T a: [3, 3]
        let mut s = [0f64; 9];
        gemm(rows(&mut s[..], 3, 3), rows(&a[..], 2, 3).t(), rows(&a[..], 2, 3), 1.0, false)
            .unwrap();
        assert!(same(&s, &[17., 22., 27., 22., 29., 36., 27., 36., 45.]));
        assert!(gemm(rows(&mut s[..], 3, 3), rows(&a[..], 3, 3), rows(&a[..], 2, 3), 1.0, false)
            .is_err());
        assert!(gemm(rows(&mut s[..8], 3, 3), rows(&a[..], 3, 2), rows(&a[..], 2, 3), 1.0, false)
            .is_err());
    }

    /// Products big enough to be split over the pool, with a width that is no multiple of
    /// the parts, a transposed right-hand side and accumulation, against the definition.
    #[test]
    fn split_products_match_the_definition() {
        let (m, k, n) = (33, 90, 101);
        let a: Vec<f64> = (0..m * k).map(|i| ((i * 7) % 11) as f64 - 5.0).collect();
        let w: Vec<f64> = (0..n * k).map(|i| ((i * 5) % 13) as f64 - 6.0).collect(); // [n, k]
        let mut y = vec![1f64; m * n];
        gemm(rows(&mut y[..], m, n), rows(&a[..], m, k), rows(&w[..], n, k).t(), 2.0, true)
            .unwrap();
        for i in 0..m {
            for j in 0..n {
                let dot: f64 = (0..k).map(|l| a[i * k + l] * w[j * k + l]).sum();
                assert!((y[i * n + j] - (1.0 + 2.0 * dot)).abs() < 1e-9, "({i}, {j})");
            }
        }
    }

    #[test]
    fn new_products_equal_products_into_zeros() {
        let (m, k, n) = (40, 70, 120);
        let a: Vec<f32> = (0..m * k).map(|i| ((i * 3) % 7) as f32 - 3.0).collect();
        let w: Vec<f32> = (0..n * k).map(|i| ((i * 5) % 9) as f32 - 4.0).collect();
        let mut into = vec![0f32; m * n];
        gemm(rows(&mut into[..], m, n), rows(&a[..], m, k), rows(&w[..], n, k).t(), 0.5, false)
            .unwrap();
        let new = product(rows(&a[..], m, k), rows(&w[..], n, k).t(), 0.5).unwrap();
        assert!(new.len() == m * n && new.iter().zip(&into).all(|(x, y)| (x - y).abs() < 1e-3));
        assert!(
            product(rows(&a[..], m, k), rows(&w[..], n, k), 1.0).is_err(),
            "[40, 70] x [120, 70]"
        );
    }
}
