//! The HTTP API as a library (OpenAI-style chat completions and embeddings); the `braid`
//! binary only starts it.
#![deny(missing_docs)]

mod openai;

pub use openai::{ChatMessage, ChatRequest, EmbeddingsInput, EmbeddingsRequest};
