//! Throughput of the `gemm` crate at the LLaMA-135M training shapes by operand layout, each
//! product split by output columns over two threads (as `fused::gemm` does).
#![allow(unsafe_code)]
use gemm::{gemm, Parallelism};
use std::time::Instant;

/// dst[m, n] = lhs[m, k] x rhs[k, n], strides (row, col) given per operand, split by columns.
#[allow(clippy::too_many_arguments)]
fn mm(m: usize, n: usize, k: usize, d: &mut [f32], (drs, dcs): (usize, usize), l: &[f32], (lrs, lcs): (usize, usize), r: &[f32], (rrs, rcs): (usize, usize)) {
    let h = n / 2;
    let (dp, lp, rp) = (d.as_mut_ptr() as usize, l.as_ptr() as usize, r.as_ptr() as usize);
    let part = |j0: usize, cols: usize| unsafe {
        gemm(m, cols, k, (dp as *mut f32).add(j0 * dcs), dcs as isize, drs as isize, false, lp as *const f32, lcs as isize, lrs as isize,
            (rp as *const f32).add(j0 * rcs), rcs as isize, rrs as isize, 0.0, 1.0, false, false, false, Parallelism::None)
    };
    rayon::join(|| part(0, h), || part(h, n - h));
}

fn time(f: &mut dyn FnMut()) -> f64 {
    for _ in 0..3 { f(); }
    (0..30).map(|_| { let t = Instant::now(); f(); t.elapsed().as_secs_f64() }).fold(f64::MAX, f64::min)
}

fn main() {
    for m in [296usize, 768] {
        for (n, k) in [(576usize, 576usize), (192, 576), (1536, 576), (576, 1536), (49152, 576)] {
            let x: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32).collect();
            let w: Vec<f32> = (0..n * k).map(|i| (i % 5) as f32).collect(); // W [n, k]
            let g: Vec<f32> = (0..m * n).map(|i| (i % 3) as f32).collect();
            let (mut y, mut dx) = (vec![0f32; m * n], vec![0f32; m * k]);
            let fl = 2.0 * (m * n * k) as f64 / 1e9;
            // y = x W^T: W stored [n, k] (rhs strides (1, k)) or W^T stored [k, n] (rhs (n, 1)).
            let f1 = time(&mut || mm(m, n, k, &mut y, (n, 1), &x, (k, 1), &w, (1, k)));
            let f3 = time(&mut || mm(m, n, k, &mut y, (n, 1), &x, (k, 1), &w, (n, 1)));
            // dx = g W: W stored [n, k] (rhs (k, 1)) or W^T stored [k, n] (rhs (1, n)).
            let b1 = time(&mut || mm(m, k, n, &mut dx, (k, 1), &g, (n, 1), &w, (k, 1)));
            let b2 = time(&mut || mm(m, k, n, &mut dx, (k, 1), &g, (n, 1), &w, (1, n)));
            println!("m={m} n={n} k={k}  W: fwd {:.0} bwd {:.0}   W^T: fwd {:.0} bwd {:.0} GF/s", fl / f1, fl / b1, fl / f3, fl / b2);
        }
    }
}
