//! The encoder contract shared by every modality.

use braid_core::{Features, Modality, Result};
use candle_core::Tensor;

/// A modality encoder.
///
/// Inputs by modality (already decoded and preprocessed by `braid-data`):
/// - text: token ids `[batch, seq]` (u32), mask `[batch, seq]`
/// - image: pixels `[batch, 3, height, width]` (f32, normalised)
/// - audio: log-mel `[batch, mels, frames]`
/// - video: frames `[batch, time, 3, height, width]`
/// - IMU / time series: `[batch, time, channels]`, mask `[batch, time]`
pub trait Encoder: Send + Sync {
    /// The modality this encoder reads.
    fn modality(&self) -> Modality;

    /// Width of each output token.
    fn output_dim(&self) -> usize;

    /// input: see the trait docs -> [`Features`] `[batch, n, output_dim]`.
    fn encode(&self, input: &Tensor, mask: Option<&Tensor>) -> Result<Features>;
}
