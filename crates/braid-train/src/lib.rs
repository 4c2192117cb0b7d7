//! Training: the loop, stages (which components train), losses, optimisers and
//! schedules, checkpoints, metrics and plots, LoRA merge, adapters, pathway.
#![deny(missing_docs)]

pub mod checkpoint;
pub mod classify;
mod config;
pub mod metrics;
pub mod optim;
pub mod order;
pub mod plot;
pub mod recipe;
pub mod schedule;
mod stage;
pub mod stages;
mod trainer;

pub use config::TrainConfig;
pub use optim::{clip_grad_norm, AdamW, AdamWConfig, GradAccumulator, Grads};
pub use schedule::CosineWithWarmup;
pub use stage::{Component, Stage};
pub use trainer::{fit, RunOptions, RunSummary, Task};
