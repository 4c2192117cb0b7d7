//! The fusion contract.

use braid_core::{Features, Result};
use candle_core::Tensor;

/// Several modalities' features -> class logits.
pub trait FusionModel {
    /// Number of modalities it fuses, in a fixed order.
    fn num_modalities(&self) -> usize;

    /// Number of classes.
    fn num_classes(&self) -> usize;

    /// inputs: one entry per modality, `None` where a modality is missing (the model
    /// imputes or skips it) -> logits `[batch, num_classes]`.
    fn forward(&self, inputs: &[Option<Features>]) -> Result<Tensor>;
}
