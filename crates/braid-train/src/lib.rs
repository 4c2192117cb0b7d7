//! Training: the loop, stages (which components train), losses, optimisers and
//! schedules, checkpoints, metrics and plots, LoRA merge, adapters, pathway.
#![deny(missing_docs)]

mod stage;

pub use stage::{Component, Stage};
