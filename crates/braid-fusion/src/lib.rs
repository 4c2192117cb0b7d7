//! Fusion classifiers over several modalities (MultiBench style): early, late, weighted
//! and attention fusion, tensor and low-rank tensor fusion, a cross-modal transformer, a
//! multimodal autoencoder, ensembles, a shared representation, and imputation of a
//! missing modality. Reference: MultiBench (arXiv 2107.07502, `pliang279/MultiBench`,
//! `fusions/common_fusions.py`, `objective_functions/`).
#![deny(missing_docs)]

mod classifier;
mod config;
mod fusion;
pub mod methods;
pub mod ops;

pub use classifier::{FusionClassifier, ENCODER_PREFIX};
pub use config::{
    Combine, FusionConfig, FusionInput, FusionMethod, ImputeKind, LateWeights, SharedObjective,
};
pub use fusion::{batch_of, or_zeros, pooled, pooled_or_zeros, sum_terms, FusionModel};
