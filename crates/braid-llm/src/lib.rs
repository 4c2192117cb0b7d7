//! Part 3 of a multimodal LLM: the language-model backbone. Every multimodal model speaks
//! through [`LanguageModel::embed_tokens`] and [`LanguageModel::forward_embeds`], so
//! projected modality tokens can be spliced among text-token embeddings.
//!
//! Beside the decoder: the [`tokenizer`] (from `tokenizer.json` or GGUF metadata), the
//! model's own [`chat_template`], and [`generate`] (KV-cached, batched, sampled, streamed).
#![deny(missing_docs)]

pub mod chat_template;
pub mod generate;
pub mod llama;
mod model;
mod perplexity;
mod text_model;
pub mod tokenizer;

pub use chat_template::{ChatTemplate, Message};
pub use llama::{load_adapter, varmap_tensors, AdapterConfig, Llama, LlamaConfig, Weights};
pub use model::{DecodeCache, LanguageModel, LmOutput};
pub use perplexity::{perplexity, Perplexity};
pub use text_model::TextModel;
pub use tokenizer::Tokenizer;
