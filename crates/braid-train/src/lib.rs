//! Training: the loop, stages (which components train), losses, optimisers and
//! schedules, checkpoints, metrics and plots, LoRA merge, adapters, pathway.
#![deny(missing_docs)]

pub mod adapt;
pub mod checkpoint;
pub mod classify;
mod config;
pub mod dist;
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

/// The spin limit of candle's element-wise worker threads while training, unless the user
/// set `CANDLE_BARRIER_POOL_SPIN_LIMIT`.
const TRAINING_SPIN_LIMIT: &str = "1000";

/// Before training: candle's element-wise ops hand work to their own worker threads, which
/// spin ~25,000 times after each op before parking (right for decoding, where the next op
/// comes at once). Between the many short ops of a training step that spinning takes a
/// core from the matmuls on rayon's pool; with 1,000 spins the easy-VQA align step ran ~5%
/// faster on 2 cores (`bench/easyvqa_speed.sh`). Call it before the first tensor op: candle
/// reads the variable once, when it starts those threads.
pub fn quiet_spinning() {
    const VAR: &str = "CANDLE_BARRIER_POOL_SPIN_LIMIT";
    if std::env::var_os(VAR).is_none() {
        std::env::set_var(VAR, TRAINING_SPIN_LIMIT);
    }
}
