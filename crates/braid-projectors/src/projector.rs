//! The projector contracts.

use braid_core::{Features, Result};
use candle_core::Tensor;

/// Encoder features -> language-model embeddings (linear, MLP, resampler, Q-Former, UPM).
pub trait InputProjector: Send + Sync {
    /// Width of the encoder features it reads.
    fn in_dim(&self) -> usize;

    /// Width of the embeddings it produces (the LLM's hidden size).
    fn out_dim(&self) -> usize;

    /// features `[batch, n, in_dim]` -> `[batch, m, out_dim]` (m = n for token-wise
    /// projectors, the number of queries for resamplers), with the mask that applies.
    fn project(&self, features: &Features) -> Result<Features>;

    /// The router's weights over experts per output token, `[batch, m, experts]`, for a
    /// projector that routes (the UPM); `None` for the others.
    fn routing_weights(&self, _features: &Features) -> Result<Option<Tensor>> {
        Ok(None)
    }
}

/// LLM hidden states at signal tokens -> a generator's conditioning.
pub trait OutputProjector: Send + Sync {
    /// Width of the hidden states it reads.
    fn in_dim(&self) -> usize;

    /// Width of the conditioning it produces.
    fn out_dim(&self) -> usize;

    /// hidden `[batch, k, in_dim]` -> conditioning `[batch, c, out_dim]`.
    fn project(&self, hidden: &Tensor) -> Result<Tensor>;
}
