//! Video encoders over sampled frames `[batch, T, 3, H, W]` (from `braid_data::video`): a
//! per-frame image encoder ([`VideoEncoder`]) with temporal pooling ([`TemporalPool`]:
//! mean, or learned attention pooling).

mod frames;
mod pool;

pub use frames::{FrameToken, VideoEncoder};
pub use pool::{AttentionPool, TemporalPool, TemporalPoolingConfig};
