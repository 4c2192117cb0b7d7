//! Training: the loop, stages (which components train), losses, optimisers and
//! schedules, checkpoints, metrics and plots, LoRA merge, adapters, pathway.
#![deny(missing_docs)]

pub mod optim;
pub mod schedule;
mod stage;

pub use optim::{clip_grad_norm, AdamW, AdamWConfig, GradAccumulator, Grads};
pub use schedule::CosineWithWarmup;
pub use stage::{Component, Stage};
