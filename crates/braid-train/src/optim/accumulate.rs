//! Gradient accumulation: the optimiser step sees the mean of the micro-batch gradients,
//! which equals the gradient of the mean loss over the whole (large) batch when the
//! micro-batches have equal size. PyTorch recipes get the same by calling
//! `(loss / n).backward()` on each micro-batch.

use braid_core::Result;

use super::Grads;

/// Sums micro-batch gradients and hands back their mean.
#[derive(Debug, Default)]
pub struct GradAccumulator {
    sum: Grads,
    n: usize,
}

impl GradAccumulator {
    /// An empty accumulator.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one micro-batch's gradients.
    pub fn add(&mut self, grads: &Grads) -> Result<()> {
        self.sum.add_assign(grads)?;
        self.n += 1;
        Ok(())
    }

    /// Micro-batches added since the last [`Self::finish`].
    pub fn count(&self) -> usize {
        self.n
    }

    /// The mean of the gradients added (sum / n), leaving the accumulator empty.
    pub fn finish(&mut self) -> Result<Grads> {
        let n = std::mem::take(&mut self.n);
        let sum = std::mem::take(&mut self.sum);
        if n <= 1 {
            return Ok(sum);
        }
        sum.scale(1.0 / n as f64)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::collections::BTreeMap;

    use candle_core::{Device, Tensor};

    use super::*;

    #[test]
    fn mean_of_micro_batches() {
        let mut acc = GradAccumulator::new();
        for v in [1f32, 2.0, 6.0] {
            let g = Tensor::new(&[v, 2.0 * v], &Device::Cpu).unwrap();
            acc.add(&Grads::from_map(BTreeMap::from([("w".to_string(), g)]))).unwrap();
        }
        assert_eq!(acc.count(), 3);
        let mean = acc.finish().unwrap();
        assert_eq!(mean.get("w").unwrap().to_vec1::<f32>().unwrap(), vec![3.0, 6.0]);
        assert_eq!(acc.count(), 0);
    }
}
