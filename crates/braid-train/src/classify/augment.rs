//! Training-time augmentation of time-series batches `[batch, time, channels]`, seeded by
//! the optimiser step so that a resumed run sees the same augmented batches: per-example
//! amplitude scaling and a circular time shift.

use braid_core::Result;
use candle_core::Tensor;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// Augmentation settings (all off by default).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Augment {
    /// Each example is multiplied by a factor drawn uniformly from `1 ± scale`.
    pub scale: f64,
    /// Each example is rolled in time by up to this many steps either way.
    pub max_shift: usize,
    /// Seed (combined with the step).
    pub seed: u64,
}

impl Augment {
    /// x: [batch, time, channels] -> the same shape.
    pub fn apply(&self, x: &Tensor, step: usize) -> Result<Tensor> {
        if self.scale == 0.0 && self.max_shift == 0 {
            return Ok(x.clone());
        }
        let mut rng =
            StdRng::seed_from_u64(self.seed ^ (step as u64).wrapping_mul(0x2545_F491_4F6C_DD1D));
        let (b, t, _) = x.dims3()?;
        let mut rows = Vec::with_capacity(b);
        for i in 0..b {
            let mut xi = x.get(i)?;
            if self.max_shift > 0 && t > 1 {
                let s = rng.gen_range(0..=2 * self.max_shift) % t;
                let s = (s + t - self.max_shift % t) % t;
                if s > 0 {
                    xi = Tensor::cat(&[xi.narrow(0, t - s, s)?, xi.narrow(0, 0, t - s)?], 0)?;
                }
            }
            if self.scale > 0.0 {
                xi = xi.affine(1.0 + rng.gen_range(-self.scale..=self.scale), 0.0)?;
            }
            rows.push(xi);
        }
        Ok(Tensor::stack(&rows, 0)?)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use candle_core::Device;

    use super::*;

    #[test]
    fn off_is_identity_and_on_is_seeded_by_step() {
        let x = Tensor::arange(0f32, 12.0, &Device::Cpu).unwrap().reshape((2, 3, 2)).unwrap();
        let same = Augment::default().apply(&x, 3).unwrap();
        assert_eq!(same.to_vec3::<f32>().unwrap(), x.to_vec3::<f32>().unwrap());
        let a = Augment { scale: 0.1, max_shift: 1, seed: 5 };
        let (p, q, r) = (a.apply(&x, 1).unwrap(), a.apply(&x, 1).unwrap(), a.apply(&x, 2).unwrap());
        assert_eq!(p.to_vec3::<f32>().unwrap(), q.to_vec3::<f32>().unwrap());
        assert_ne!(p.to_vec3::<f32>().unwrap(), r.to_vec3::<f32>().unwrap());
        assert_eq!(p.dims(), x.dims());
    }
}
