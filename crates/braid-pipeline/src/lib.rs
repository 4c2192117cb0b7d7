//! Wires parts 1 to 5 (encoders, input projectors, language model, output projectors,
//! generators) from one [`PipelineConfig`]; the only crate that knows all five.
#![deny(missing_docs)]

mod config;
pub mod llava;
pub mod splice;

pub use config::{EncoderSlot, PipelineConfig};
pub use llava::{Llava, LlavaConfig};
