//! The optimisation part of a recipe (`[train]`): how long, how fast, how often to
//! evaluate and checkpoint. Unknown fields are errors, so a typo never silently trains with
//! a default.

use braid_core::{Error, Result};
use serde::{Deserialize, Serialize};

use crate::{AdamWConfig, CosineWithWarmup};

/// Loop settings; defaults follow PyTorch/transformers conventions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Passes over the training set (ignored when `max_steps` is set).
    pub epochs: usize,
    /// Optimiser steps of the whole run; 0 derives it from `epochs`.
    pub max_steps: usize,
    /// Examples per micro-batch.
    pub batch_size: usize,
    /// Micro-batches whose mean gradient makes one optimiser step.
    pub grad_accum: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Decoupled weight decay (matrices only, see `braid_train::optim::decays`).
    pub weight_decay: f64,
    /// AdamW betas.
    pub betas: [f64; 2],
    /// AdamW epsilon.
    pub eps: f64,
    /// Linear warmup, as a fraction of all steps (used when `warmup_steps` is 0).
    pub warmup_ratio: f64,
    /// Linear warmup in steps.
    pub warmup_steps: usize,
    /// Clip the global gradient norm to this (0: no clipping).
    pub max_grad_norm: f64,
    /// Seeds the data order (and anything else random in the task).
    pub seed: u64,
    /// Evaluate every this many steps (0: only at the end).
    pub eval_every: usize,
    /// Write a checkpoint every this many steps (0: only at the end).
    pub checkpoint_every: usize,
    /// Checkpoints kept on disk (the newest ones).
    pub keep_checkpoints: usize,
    /// Log the training loss every this many steps.
    pub log_every: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            epochs: 1,
            max_steps: 0,
            batch_size: 32,
            grad_accum: 1,
            lr: 1e-3,
            weight_decay: 0.01,
            betas: [0.9, 0.999],
            eps: 1e-8,
            warmup_ratio: 0.0,
            warmup_steps: 0,
            max_grad_norm: 1.0,
            seed: 0,
            eval_every: 0,
            checkpoint_every: 0,
            keep_checkpoints: 2,
            log_every: 10,
        }
    }
}

impl TrainConfig {
    /// Fails on values no run can use, naming the field.
    pub fn validate(&self) -> Result<()> {
        let positive = [
            ("train.batch_size", self.batch_size),
            ("train.grad_accum", self.grad_accum),
            ("train.keep_checkpoints", self.keep_checkpoints),
        ];
        for (field, v) in positive {
            if v == 0 {
                return Err(Error::config(field, "must be at least 1"));
            }
        }
        if self.batch_size.checked_mul(self.grad_accum).is_none() {
            let msg = format!(
                "batch_size {} x grad_accum {} overflows",
                self.batch_size, self.grad_accum
            );
            return Err(Error::config("train.grad_accum", msg));
        }
        if self.epochs == 0 && self.max_steps == 0 {
            return Err(Error::config("train.epochs", "set epochs or max_steps"));
        }
        // Written so that NaN fails each test.
        let floats = [
            ("train.lr", self.lr, self.lr.is_finite() && self.lr > 0.0, "a finite number > 0"),
            ("train.eps", self.eps, self.eps.is_finite() && self.eps > 0.0, "a finite number > 0"),
            (
                "train.weight_decay",
                self.weight_decay,
                self.weight_decay.is_finite() && self.weight_decay >= 0.0,
                "a finite number >= 0",
            ),
            (
                "train.max_grad_norm",
                self.max_grad_norm,
                self.max_grad_norm.is_finite() && self.max_grad_norm >= 0.0,
                "a finite number >= 0 (0: no clipping)",
            ),
            (
                "train.betas",
                self.betas[0],
                (0.0..1.0).contains(&self.betas[0]),
                "in [0, 1) (both betas)",
            ),
            (
                "train.betas",
                self.betas[1],
                (0.0..1.0).contains(&self.betas[1]),
                "in [0, 1) (both betas)",
            ),
            (
                "train.warmup_ratio",
                self.warmup_ratio,
                (0.0..1.0).contains(&self.warmup_ratio),
                "in [0, 1)",
            ),
        ];
        if let Some((field, v, _, want)) = floats.into_iter().find(|f| !f.2) {
            return Err(Error::config(field, format!("must be {want}, got {v}")));
        }
        Ok(())
    }

    /// Optimiser steps for a training set of `n` examples.
    pub fn total_steps(&self, n: usize) -> usize {
        if self.max_steps > 0 {
            return self.max_steps;
        }
        let per_epoch = n.div_ceil(self.batch_size.saturating_mul(self.grad_accum).max(1)).max(1);
        per_epoch.saturating_mul(self.epochs)
    }

    /// The AdamW hyper-parameters.
    pub fn adamw(&self) -> AdamWConfig {
        AdamWConfig {
            lr: self.lr,
            beta1: self.betas[0],
            beta2: self.betas[1],
            eps: self.eps,
            weight_decay: self.weight_decay,
        }
    }

    /// The schedule for a run of `total` steps.
    pub fn schedule(&self, total: usize) -> CosineWithWarmup {
        let warmup = if self.warmup_steps > 0 {
            self.warmup_steps
        } else {
            (self.warmup_ratio * total as f64).round() as usize
        };
        CosineWithWarmup { base_lr: self.lr, warmup_steps: warmup, total_steps: total }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn unknown_fields_and_bad_values_name_the_field() {
        let e = toml::from_str::<TrainConfig>("epochs = 2\nlearning_rate = 0.1\n").unwrap_err();
        assert!(e.to_string().contains("learning_rate"), "{e}");
        let cfg: TrainConfig = toml::from_str("batch_size = 0").unwrap();
        assert!(cfg.validate().unwrap_err().to_string().contains("train.batch_size"));
        let cfg = TrainConfig {
            batch_size: 8,
            grad_accum: 2,
            epochs: 3,
            warmup_ratio: 0.1,
            ..Default::default()
        };
        assert_eq!(cfg.total_steps(33), 9);
        assert_eq!(cfg.schedule(9).warmup_steps, 1);
    }

    #[test]
    fn panic_train_batch_size_times_grad_accum_overflow() {
        let cfg: TrainConfig =
            toml::from_str("batch_size = 4294967296\ngrad_accum = 4294967296").unwrap();
        let e = cfg.validate().unwrap_err().to_string();
        assert!(e.contains("train.grad_accum") && e.contains("overflows"), "{e}");
        // Unvalidated, the step count saturates instead of dividing by a wrapped zero.
        assert_eq!(cfg.total_steps(10), 1);
    }

    #[test]
    fn nan_train_optimiser_values() {
        let cases = [
            ("betas = [1.0, 1.0]", "`train.betas`: must be in [0, 1) (both betas), got 1"),
            ("betas = [0.9, nan]", "`train.betas`"),
            ("betas = [-0.1, 0.999]", "`train.betas`"),
            ("eps = 0.0", "`train.eps`: must be a finite number > 0"),
            ("eps = nan", "`train.eps`"),
            ("weight_decay = -0.1", "`train.weight_decay`"),
            ("weight_decay = inf", "`train.weight_decay`"),
            (
                "max_grad_norm = nan",
                "`train.max_grad_norm`: must be a finite number >= 0 (0: no clipping), got NaN",
            ),
            ("max_grad_norm = -1.0", "`train.max_grad_norm`"),
            ("lr = nan", "`train.lr`"),
            ("lr = inf", "`train.lr`"),
            ("warmup_ratio = nan", "`train.warmup_ratio`"),
        ];
        for (toml_text, want) in cases {
            let cfg: TrainConfig = toml::from_str(toml_text).unwrap();
            let e = cfg.validate().unwrap_err().to_string();
            assert!(e.contains(want), "{toml_text}: {e}");
        }
        assert!(TrainConfig { max_grad_norm: 0.0, weight_decay: 0.0, ..Default::default() }
            .validate()
            .is_ok());
    }
}
