//! The generator contract.

use braid_core::{Modality, Result};
use candle_core::Tensor;

/// Sampling settings common to every generator.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateOptions {
    /// Seed for the sampler's noise.
    pub seed: u64,
    /// Denoising or decoding steps, where the generator has them.
    pub steps: usize,
    /// Classifier-free guidance scale (1 or less: none), where the generator has it.
    pub guidance: f64,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        Self { seed: 0, steps: 50, guidance: 7.5 }
    }
}

/// Conditioning -> a signal of some modality.
pub trait Generator {
    /// What it produces.
    fn modality(&self) -> Modality;

    /// Width of the conditioning it reads.
    fn cond_dim(&self) -> usize;

    /// cond `[batch, c, cond_dim]` -> a batch of signals: images `[batch, 3, h, w]` in
    /// [0, 1], audio `[batch, samples]` in [-1, 1].
    fn generate(&self, cond: &Tensor, opts: &GenerateOptions) -> Result<Tensor>;

    /// Straight from a text prompt: through the generator's own text encoder, or an engine
    /// that reads text. The same shapes as [`Self::generate`] with a batch of one.
    fn generate_text(&self, prompt: &str, opts: &GenerateOptions) -> Result<Tensor>;
}
