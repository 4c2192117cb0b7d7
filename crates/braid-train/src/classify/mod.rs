//! The `classify` stage: an encoder with a linear head trained by cross-entropy, its
//! metrics (accuracy, per-class and macro F1, confusion matrix) and augmentation.

mod augment;
mod metrics;
mod task;

pub use augment::Augment;
pub use metrics::ClassMetrics;
pub use task::{ClassifyTask, Examples};
