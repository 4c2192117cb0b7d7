//! The fusion methods, each a [`crate::FusionModel`] over the inputs' encoder features.

mod ensemble;
mod impute;
mod latent;
mod mult;
mod simple;
mod tensor;

pub use ensemble::Ensemble;
pub use impute::Imputer;
pub use latent::{Autoencoder, Shared};
pub use mult::{sinusoidal_positions, CrossModalBlock, Mult};
pub use simple::{Early, Gated, Late};
pub use tensor::{tensor_fusion, Lmf, LowRankFusion, Tfn};

use braid_core::Result;
use candle_nn::VarBuilder;

use crate::config::FusionMethod;
use crate::FusionModel;

/// Builds `method` under `vb` for inputs whose features are `dims` wide and whose
/// samples hold `sizes` elements.
pub fn build(
    method: &FusionMethod,
    dims: &[usize],
    sizes: &[usize],
    classes: usize,
    hidden: usize,
    vb: VarBuilder,
) -> Result<Box<dyn FusionModel>> {
    Ok(match method {
        FusionMethod::Early => Box::new(Early::new(dims, classes, hidden, vb)?),
        FusionMethod::Late { weights } => Box::new(Late::new(dims, classes, *weights, vb)?),
        FusionMethod::WeightedSum => Box::new(Gated::new(dims, classes, hidden, false, vb)?),
        FusionMethod::Attention => Box::new(Gated::new(dims, classes, hidden, true, vb)?),
        FusionMethod::Tfn => Box::new(Tfn::new(dims, classes, hidden, vb)?),
        FusionMethod::Lmf { rank } => Box::new(Lmf::new(dims, classes, hidden, *rank, vb)?),
        FusionMethod::Mult { layers, heads } => {
            Box::new(Mult::new(dims, classes, hidden, *layers, *heads, vb)?)
        }
        FusionMethod::Autoencoder { latent, reconstruction } => {
            Box::new(Autoencoder::new(dims, sizes, classes, hidden, *latent, *reconstruction, vb)?)
        }
        FusionMethod::Ensemble { combine } => Box::new(Ensemble::new(dims, classes, *combine, vb)?),
        FusionMethod::Shared { objective, weight } => {
            Box::new(Shared::new(dims, classes, hidden, *objective, *weight, vb)?)
        }
    })
}
