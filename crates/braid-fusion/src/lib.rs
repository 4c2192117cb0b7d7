//! Fusion classifiers over several modalities (MultiBench style): early, late, attention
//! and tensor fusion, autoencoders with a classifier, missing-modality imputation,
//! ensembles.
#![deny(missing_docs)]

mod fusion;

pub use fusion::FusionModel;
