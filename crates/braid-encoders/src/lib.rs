//! Part 1 of a multimodal LLM: modality encoders. Each turns a batch of preprocessed
//! signals into [`Features`] (`tokens: [batch, n, dim]` with a validity mask) that an input
//! projector maps into the language model's embedding space.
#![deny(missing_docs)]

pub mod audio;
mod config;
mod encoder;
pub mod image;
pub mod imu;
mod shape;
pub mod text;
pub mod video;

pub use config::EncoderConfig;
pub use encoder::Encoder;
