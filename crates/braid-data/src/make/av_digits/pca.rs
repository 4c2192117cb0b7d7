//! The degradation of AV-MNIST's images (Vielzeuf et al., "CentralNet: a Multilayer Approach
//! for Multimodal Fusion", ECCV workshops 2018): principal component analysis of the
//! training images, then the leading components that together hold a share of the
//! variance (75 %) are projected out of every image, and the mean is added back.
//!
//! The leading eigenvectors of the covariance come from subspace iteration with
//! Rayleigh-Ritz steps (Golub and Van Loan, "Matrix Computations", 4th ed., 8.2.4), whose
//! small projected problems are solved by cyclic Jacobi rotations (8.5.3): only the few
//! dozen leading components are needed, not all 784.

use braid_core::{Error, Result};

use crate::make::rng::Rng;

/// Subspace iterations at most per block size.
const MAX_ITERS: usize = 2000;
/// Ritz values this close (relative to the largest) between two iterations have converged.
const TOLERANCE: f64 = 1e-10;

/// The mean of the training rows and the leading components taken out.
#[derive(Debug, Clone)]
pub struct Pca {
    mean: Vec<f64>,
    /// Unit eigenvectors of the covariance, largest variance first.
    components: Vec<Vec<f64>>,
    /// The share of the total variance they hold.
    share: f64,
}

impl Pca {
    /// Fits on the rows of `x` (`[n, d]`, row-major) the fewest leading components whose
    /// variance is at least `share` (in `(0, 1]`) of the total.
    pub fn fit_leading(x: &[f32], d: usize, share: f64) -> Result<Self> {
        let n = x.len().checked_div(d).unwrap_or(0);
        if n < 2 || n * d != x.len() {
            return Err(Error::Invalid(format!(
                "PCA needs at least 2 rows of {d} values, got {} values",
                x.len()
            )));
        }
        if !(share > 0.0 && share <= 1.0) {
            return Err(Error::config("energy", format!("must be in (0, 1], got {share}")));
        }
        let mut mean = vec![0f64; d];
        for row in x.chunks_exact(d) {
            mean.iter_mut().zip(row).for_each(|(m, &v)| *m += f64::from(v));
        }
        mean.iter_mut().for_each(|m| *m /= n as f64);
        let cov = covariance(x, &mean)?;
        let total: f64 = (0..d).map(|i| cov[i * d + i]).sum();
        if total <= 0.0 {
            return Ok(Self { mean, components: Vec::new(), share: 0.0 });
        }
        let mut basis = Vec::new();
        let mut k = 16.min(d);
        loop {
            let (values, vectors) = leading_eigen(&cov, d, k, basis)?;
            // The last quarter of a block converges slowly; only the rest is trusted.
            let trusted = if k == d { d } else { k - k / 4 };
            let mut sum = 0.0;
            let needed = values.iter().position(|&v| {
                sum += v;
                sum >= share * total * (1.0 - 1e-12)
            });
            if let Some(m) = needed.map(|i| i + 1).filter(|&m| m <= trusted) {
                let held = values[..m].iter().sum::<f64>() / total;
                return Ok(Self { mean, components: vectors[..m].to_vec(), share: held });
            }
            if k == d {
                return Err(Error::Invalid("PCA: the eigenvalues do not add up".into()));
            }
            basis = vectors;
            k = (2 * k).min(d);
        }
    }

    /// Components taken out.
    pub fn components(&self) -> usize {
        self.components.len()
    }

    /// The share of the training variance they hold.
    pub fn share(&self) -> f64 {
        self.share
    }

    /// Each row of `x` (`[n, d]`) becomes the mean plus its centred part with the
    /// components projected out.
    pub fn remove(&self, x: &mut [f32]) {
        let d = self.mean.len().max(1);
        let mut centred = vec![0f64; d];
        for row in x.chunks_exact_mut(d) {
            centred.iter_mut().zip(row.iter()).zip(&self.mean).for_each(|((c, &v), m)| {
                *c = f64::from(v) - m;
            });
            for v in &self.components {
                let coef = dot(&centred, v);
                centred.iter_mut().zip(v).for_each(|(c, &vi)| *c -= coef * vi);
            }
            row.iter_mut().zip(&centred).zip(&self.mean).for_each(|((r, c), m)| {
                *r = (c + m) as f32;
            });
        }
    }
}

/// The sample covariance `[d, d]` of the rows of `x` about `mean`, by candle's matmul.
fn covariance(x: &[f32], mean: &[f64]) -> Result<Vec<f64>> {
    use candle_core::{Device, Tensor};
    let d = mean.len();
    let n = x.len() / d;
    let centred: Vec<f64> = x
        .chunks_exact(d)
        .flat_map(|r| r.iter().zip(mean).map(|(&v, m)| f64::from(v) - m))
        .collect();
    let xc = Tensor::from_vec(centred, (n, d), &Device::Cpu)?;
    let cov = (xc.t()?.matmul(&xc)? / (n - 1) as f64)?;
    Ok(cov.flatten_all()?.to_vec1::<f64>()?)
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// The `k` largest eigenvalues of the symmetric `c` (`[d, d]`) and their unit vectors,
/// largest first, by subspace iteration from `start` (completed with seeded random vectors).
fn leading_eigen(
    c: &[f64],
    d: usize,
    k: usize,
    mut start: Vec<Vec<f64>>,
) -> Result<(Vec<f64>, Vec<Vec<f64>>)> {
    let mut rng = Rng::keyed(0, "pca");
    while start.len() < k {
        start.push((0..d).map(|_| rng.unit() - 0.5).collect());
    }
    start.truncate(k);
    let mut q = orthonormal(start, &mut rng);
    let trusted = if k == d { d } else { k - k / 4 };
    let mut previous = vec![f64::INFINITY; k];
    for _ in 0..MAX_ITERS {
        let z: Vec<Vec<f64>> =
            q.iter().map(|v| c.chunks_exact(d).map(|row| dot(row, v)).collect()).collect();
        // Rayleigh-Ritz: the eigenpairs of Q^T C Q rotate the block to Ritz vectors.
        let mut t = vec![0f64; k * k];
        for a in 0..k {
            for b in 0..k {
                t[a * k + b] = dot(&q[a], &z[b]);
            }
        }
        let (theta, u) = jacobi_eigen(t, k);
        let ritz = rotate(&z, &u, k, d);
        let scale = theta.first().copied().unwrap_or(0.0).abs().max(f64::MIN_POSITIVE);
        let converged = theta
            .iter()
            .zip(&previous)
            .take(trusted)
            .all(|(a, b)| (a - b).abs() <= TOLERANCE * scale);
        if converged {
            // The Ritz vectors of this step (Q U) pair with these values.
            let vectors = rotate(&q, &u, k, d);
            return Ok((theta, vectors));
        }
        previous = theta;
        q = orthonormal(ritz, &mut rng);
    }
    Err(Error::Invalid(format!("PCA: subspace iteration did not converge in {MAX_ITERS} steps")))
}

/// The block `vs` (`k` vectors of `d`) times `u` (`[k, k]`): vector `j` is
/// `sum_a u[a][j] vs[a]`.
fn rotate(vs: &[Vec<f64>], u: &[f64], k: usize, d: usize) -> Vec<Vec<f64>> {
    (0..k)
        .map(|j| {
            let mut v = vec![0f64; d];
            for (a, va) in vs.iter().enumerate() {
                let w = u[a * k + j];
                v.iter_mut().zip(va).for_each(|(vi, &x)| *vi += w * x);
            }
            v
        })
        .collect()
}

/// Modified Gram-Schmidt; a vector that vanishes is replaced by a random one.
fn orthonormal(mut vs: Vec<Vec<f64>>, rng: &mut Rng) -> Vec<Vec<f64>> {
    for i in 0..vs.len() {
        for _attempt in 0..4 {
            let (done, rest) = vs.split_at_mut(i);
            let v = &mut rest[0];
            for u in done.iter() {
                let p = dot(v, u);
                v.iter_mut().zip(u).for_each(|(x, &y)| *x -= p * y);
            }
            let norm = dot(v, v).sqrt();
            if norm > 1e-12 {
                v.iter_mut().for_each(|x| *x /= norm);
                break;
            }
            v.iter_mut().for_each(|x| *x = rng.unit() - 0.5);
        }
    }
    vs
}

/// Eigenvalues (largest first) and unit eigenvectors (`vectors[a * k + j]`: component `a`
/// of vector `j`) of the symmetric `a` (`[k, k]`), by cyclic Jacobi rotations.
fn jacobi_eigen(mut a: Vec<f64>, k: usize) -> (Vec<f64>, Vec<f64>) {
    let mut v = vec![0f64; k * k];
    (0..k).for_each(|i| v[i * k + i] = 1.0);
    for _sweep in 0..100 {
        let off: f64 = (0..k)
            .flat_map(|p| (0..k).filter(move |&q| q != p).map(move |q| (p, q)))
            .map(|(p, q)| a[p * k + q].powi(2))
            .sum();
        let diag: f64 = (0..k).map(|p| a[p * k + p].powi(2)).sum();
        if off <= 1e-30 * diag.max(f64::MIN_POSITIVE) {
            break;
        }
        for p in 0..k {
            for q in p + 1..k {
                let apq = a[p * k + q];
                if apq == 0.0 {
                    continue;
                }
                // The rotation that zeroes a[p][q] (Golub and Van Loan, Algorithm 8.5.1).
                let theta = (a[q * k + q] - a[p * k + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for r in 0..k {
                    let (rp, rq) = (a[r * k + p], a[r * k + q]);
                    a[r * k + p] = c * rp - s * rq;
                    a[r * k + q] = s * rp + c * rq;
                }
                for r in 0..k {
                    let (pr, qr) = (a[p * k + r], a[q * k + r]);
                    a[p * k + r] = c * pr - s * qr;
                    a[q * k + r] = s * pr + c * qr;
                }
                for r in 0..k {
                    let (rp, rq) = (v[r * k + p], v[r * k + q]);
                    v[r * k + p] = c * rp - s * rq;
                    v[r * k + q] = s * rp + c * rq;
                }
            }
        }
    }
    let mut order: Vec<usize> = (0..k).collect();
    order.sort_by(|&i, &j| a[j * k + j].total_cmp(&a[i * k + i]));
    let values = order.iter().map(|&i| a[i * k + i]).collect();
    let mut vectors = vec![0f64; k * k];
    for (j, &i) in order.iter().enumerate() {
        for r in 0..k {
            vectors[r * k + j] = v[r * k + i];
        }
    }
    (values, vectors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jacobi_finds_the_eigenpairs_of_a_small_matrix() {
        // Eigenvalues 4, 2, 1 (a diagonal matrix rotated in its first two coordinates).
        let (c, s) = (0.6f64, 0.8f64);
        let a = vec![
            4.0 * c * c + 2.0 * s * s,
            (4.0 - 2.0) * c * s,
            0.0,
            (4.0 - 2.0) * c * s,
            4.0 * s * s + 2.0 * c * c,
            0.0,
            0.0,
            0.0,
            1.0,
        ];
        let (values, vectors) = jacobi_eigen(a, 3);
        assert!(
            values.iter().zip([4.0, 2.0, 1.0]).all(|(v, w)| (v - w).abs() < 1e-12),
            "{values:?}"
        );
        // The first vector is (c, s, 0) up to sign.
        let first = [vectors[0], vectors[3], vectors[6]];
        assert!((first[0] * c + first[1] * s).abs() > 1.0 - 1e-12, "{first:?}");
    }

    /// Rows along three orthogonal directions of 6-d space with standard deviations 10, 3
    /// and 1 (variance shares 0.909, 0.082, 0.009), plus a mean. The coefficients are the
    /// signs of three bits of the row index, so they are exactly uncorrelated.
    #[allow(clippy::needless_range_loop)] // i indexes the columns of `dirs`
    fn data() -> (Vec<f32>, [[f64; 6]; 3]) {
        let h = 0.5f64;
        let dirs =
            [[h, h, h, h, 0.0, 0.0], [h, -h, h, -h, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0, 1.0, 0.0]];
        let mut x = Vec::new();
        for row in 0..400usize {
            let sign = |bit: usize| if (row >> bit) & 1 == 0 { -1.0 } else { 1.0 };
            let coef = [10.0 * sign(0), 3.0 * sign(1), sign(2)];
            for i in 0..6 {
                let v: f64 = (0..3).map(|k| coef[k] * dirs[k][i]).sum();
                x.push((v + i as f64) as f32);
            }
        }
        (x, dirs)
    }

    /// The variance of the rows of `x` along `dir`.
    fn variance_along(x: &[f32], dir: &[f64; 6]) -> f64 {
        let p: Vec<f64> = x
            .chunks_exact(6)
            .map(|r| r.iter().zip(dir).map(|(&v, d)| f64::from(v) * d).sum())
            .collect();
        let m = p.iter().sum::<f64>() / p.len() as f64;
        p.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (p.len() - 1) as f64
    }

    #[test]
    fn removing_75_percent_of_the_energy_takes_out_the_leading_component_only() {
        let (x, dirs) = data();
        let before = dirs.map(|d| variance_along(&x, &d));
        let pca = Pca::fit_leading(&x, 6, 0.75).unwrap();
        assert_eq!(pca.components(), 1);
        assert!((0.85..0.95).contains(&pca.share()), "{}", pca.share());
        let mut y = x.clone();
        pca.remove(&mut y);
        let after = dirs.map(|d| variance_along(&y, &d));
        assert!(after[0] < 1e-6 * before[0], "{before:?} -> {after:?}");
        for k in 1..3 {
            assert!((after[k] - before[k]).abs() < 1e-3 * before[k], "{before:?} -> {after:?}");
        }
        // The mean is kept.
        let mean = |x: &[f32], i: usize| {
            x.iter().skip(i).step_by(6).map(|&v| f64::from(v)).sum::<f64>() / 400.0
        };
        assert!((0..6).all(|i| (mean(&x, i) - mean(&y, i)).abs() < 1e-4));
        // 95 %: the second component goes too.
        let pca = Pca::fit_leading(&x, 6, 0.95).unwrap();
        assert_eq!(pca.components(), 2);
        assert!(Pca::fit_leading(&x[..6], 6, 0.75).is_err());
        assert!(Pca::fit_leading(&x, 6, 0.0).is_err());
    }

    #[test]
    fn a_block_smaller_than_the_space_converges_to_the_leading_eigenvectors() {
        // A diagonal covariance of 40 decaying variances: 16-wide blocks must grow.
        let d = 40;
        let var: Vec<f64> = (0..d).map(|i| 0.9f64.powi(i as i32)).collect();
        let mut c = vec![0f64; d * d];
        (0..d).for_each(|i| c[i * d + i] = var[i]);
        let (values, vectors) = leading_eigen(&c, d, 16, Vec::new()).unwrap();
        assert!(values.iter().zip(&var).take(12).all(|(a, b)| (a - b).abs() < 1e-8), "{values:?}");
        assert!((vectors[0][0].abs() - 1.0).abs() < 1e-6);
    }
}
