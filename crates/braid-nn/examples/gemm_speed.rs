//! The `gemm` crate at the LLaMA-135M training shapes, threaded two ways over the pool:
//! the crate's own `Parallelism::Rayon` (what candle's CPU matmul uses) and a split of the
//! output's columns with one single-threaded product per part (what `fused::gemm` does).
//! Prints GFLOP/s of `y = x W^T` (forward) and `dx = g W` (input gradient), the fastest
//! of 30 calls each.
//!
//!   RAYON_NUM_THREADS=2 cargo run --release -p braid-nn --example gemm_speed
#![allow(unsafe_code)]
use gemm::{gemm, Parallelism};
use std::time::Instant;

/// Row and column strides of a matrix view.
type Strides = (usize, usize);

/// dst[m, n] = lhs[m, k] x rhs[k, n]; `split`: by output columns, one part per thread.
#[allow(clippy::too_many_arguments)]
fn mm(
    split: bool,
    (m, n, k): (usize, usize, usize),
    d: &mut [f32],
    ds: Strides,
    l: &[f32],
    ls: Strides,
    r: &[f32],
    rs: Strides,
) {
    let threads = rayon::current_num_threads();
    let (dp, lp, rp) = (d.as_mut_ptr() as usize, l.as_ptr() as usize, r.as_ptr() as usize);
    let part = |j0: usize, cols: usize, par: Parallelism| {
        // SAFETY: the views stay inside the buffers (sizes from the caller) and the parts
        // write disjoint columns of `d`.
        unsafe {
            gemm(
                m,
                cols,
                k,
                (dp as *mut f32).add(j0 * ds.1),
                ds.1 as isize,
                ds.0 as isize,
                false,
                lp as *const f32,
                ls.1 as isize,
                ls.0 as isize,
                (rp as *const f32).add(j0 * rs.1),
                rs.1 as isize,
                rs.0 as isize,
                0.0,
                1.0,
                false,
                false,
                false,
                par,
            )
        }
    };
    if !split {
        return part(0, n, Parallelism::Rayon(threads));
    }
    let width = n.div_ceil(threads).next_multiple_of(16).min(n);
    rayon::scope(|s| {
        for j0 in (0..n).step_by(width) {
            s.spawn(move |_| part(j0, width.min(n - j0), Parallelism::None));
        }
    });
}

fn fastest(f: &mut dyn FnMut()) -> f64 {
    for _ in 0..3 {
        f();
    }
    (0..30)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::MAX, f64::min)
}

fn main() {
    println!(
        "{} threads; GFLOP/s, crate threading -> split by columns",
        rayon::current_num_threads()
    );
    for m in [64usize, 296, 768] {
        for (n, k) in [(576usize, 576usize), (192, 576), (1536, 576), (576, 1536), (49152, 576)] {
            let x: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32).collect();
            let w: Vec<f32> = (0..n * k).map(|i| (i % 5) as f32).collect(); // W [n, k]
            let g: Vec<f32> = (0..m * n).map(|i| (i % 3) as f32).collect();
            let (mut y, mut dx) = (vec![0f32; m * n], vec![0f32; m * k]);
            let gflop = 2.0 * (m * n * k) as f64 / 1e9;
            let mut rate = |split: bool, backward: bool| {
                gflop
                    / if backward {
                        fastest(&mut || {
                            mm(split, (m, k, n), &mut dx, (k, 1), &g, (n, 1), &w, (k, 1))
                        })
                    } else {
                        fastest(&mut || {
                            mm(split, (m, n, k), &mut y, (n, 1), &x, (k, 1), &w, (1, k))
                        })
                    }
            };
            let (f0, f1, b0, b1) =
                (rate(false, false), rate(true, false), rate(false, true), rate(true, true));
            println!("x [{m}, {k}], W [{n}, {k}]:  forward {f0:.0} -> {f1:.0}   input gradient {b0:.0} -> {b1:.0}");
        }
    }
}
