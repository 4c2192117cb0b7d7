//! Part 5 of a multimodal LLM: modality generators conditioned on output-projector
//! features (an image generator trained in Braid, speech, adapters to external tools).
#![deny(missing_docs)]

pub mod diffusion;
mod generator;
pub mod speech;

pub use generator::{GenerateOptions, Generator};
