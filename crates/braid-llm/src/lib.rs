//! Part 3 of a multimodal LLM: the language-model backbone. Every multimodal model speaks
//! through [`LanguageModel::embed_tokens`] and [`LanguageModel::forward_embeds`], so
//! projected modality tokens can be spliced among text-token embeddings.
#![deny(missing_docs)]

pub mod llama;
mod model;

pub use llama::{Llama, LlamaConfig};
pub use model::{DecodeCache, LanguageModel, LmOutput};
