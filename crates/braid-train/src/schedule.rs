//! Learning-rate schedule: linear warmup from 0, then half a cosine down to 0, as
//! transformers' `get_cosine_schedule_with_warmup` (`optimization.py`, `num_cycles=0.5`)
//! driven by `LambdaLR`: optimiser step `k` (0-based) uses `lr(k)`, so the first step of a
//! run with warmup runs at learning rate 0, exactly as in PyTorch.

use std::f64::consts::PI;

/// Cosine decay with linear warmup.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CosineWithWarmup {
    /// Peak learning rate, reached at the end of warmup.
    pub base_lr: f64,
    /// Optimiser steps of linear warmup.
    pub warmup_steps: usize,
    /// Optimiser steps of the whole run (warmup included).
    pub total_steps: usize,
}

impl CosineWithWarmup {
    /// The learning rate for optimiser step `step` (0-based).
    pub fn lr(&self, step: usize) -> f64 {
        self.base_lr * self.factor(step)
    }

    fn factor(&self, step: usize) -> f64 {
        if step < self.warmup_steps {
            return step as f64 / self.warmup_steps.max(1) as f64;
        }
        let progress = (step - self.warmup_steps) as f64
            / (self.total_steps.saturating_sub(self.warmup_steps)).max(1) as f64;
        (0.5 * (1.0 + (PI * progress).cos())).max(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_transformers_values() {
        // get_cosine_schedule_with_warmup(opt, 2, 6) with lr 1.0 gives these factors.
        let s = CosineWithWarmup { base_lr: 1.0, warmup_steps: 2, total_steps: 6 };
        let want = [0.0, 0.5, 1.0, 0.8535533905932737, 0.5, 0.14644660940672627, 0.0];
        for (k, w) in want.iter().enumerate() {
            assert!((s.lr(k) - w).abs() < 1e-12, "step {k}: {} vs {w}", s.lr(k));
        }
    }
}
