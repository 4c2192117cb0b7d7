//! Parts 2 and 4 of a multimodal LLM: the input projector that maps encoder features into
//! the language model's embedding space, and the output projector that maps the language
//! model's hidden states at signal tokens into a generator's conditioning space.
#![deny(missing_docs)]

mod projector;

pub use projector::{InputProjector, OutputProjector};
