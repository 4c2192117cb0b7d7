//! Wires parts 1 to 5 (encoders, input projectors, language model, output projectors,
//! generators) from one [`PipelineConfig`]; the only crate that knows all five.
#![deny(missing_docs)]

mod config;
mod encoder_config;
pub mod llava;
mod model;
mod pipeline;
pub mod splice;
mod store;

pub use config::{EncoderSlot, LoraSettings, PipelineConfig};
pub use encoder_config::EncoderConfig;
pub use llava::{Llava, LlavaConfig};
pub use pipeline::{Input, Pipeline};
pub use store::PIPELINE_FILE;
pub use model::MultimodalModel;
