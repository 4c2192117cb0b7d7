//! Parts 2 and 4 of a multimodal LLM: the input projector that maps encoder features into
//! the language model's embedding space, and the output projector that maps the language
//! model's hidden states at signal tokens into a generator's conditioning space.
//!
//! Input projectors, chosen by [`ProjectorConfig`]: [`LinearProjector`] (LLaVA),
//! [`MlpProjector`] (LLaVA-1.5 `mlp2x_gelu`), [`Resampler`] (Flamingo / Qwen-VL learned
//! queries), [`QFormerProjector`] (BLIP-2) and [`UpmProjector`] (OneLLM's universal projection
//! module: routed experts shared by every modality). Output projectors, chosen by
//! [`OutputProjectorConfig`]: [`OutputMlp`] and [`OutputTransformer`] (NExT-GPT).
#![deny(missing_docs)]

mod config;
mod linear;
mod mlp;
mod output;
mod projector;
mod qformer;
mod resampler;
mod upm;

#[cfg(test)]
mod test_support;

pub use config::ProjectorConfig;
pub use linear::{LinearConfig, LinearProjector};
pub use mlp::{MlpProjector, MlpProjectorConfig};
pub use output::{output_projector, OutputMlp, OutputProjectorConfig, OutputTransformer};
pub use projector::{InputProjector, OutputProjector};
pub use qformer::{QFormer, QFormerConfig, QFormerProjector};
pub use resampler::{Resampler, ResamplerConfig};
pub use upm::{UpmConfig, UpmExperts, UpmProjector, UpmRoute};
