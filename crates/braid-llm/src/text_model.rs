//! A decoder together with its tokenizer, from the one path a user gives: a GGUF file
//! (tokenizer and chat template from its metadata) or a Hugging Face folder
//! (`config.json`, `model.safetensors`, `tokenizer.json`, `tokenizer_config.json`).

use std::path::Path;

use braid_core::checkpoint::{Gguf, LoadReport};
use braid_core::Result;
use candle_core::Device;

use crate::{ChatTemplate, Llama, Tokenizer, Weights};

/// A language model ready for text in and text out.
#[derive(Debug, Clone)]
pub struct TextModel {
    /// The decoder.
    pub model: Llama,
    /// Its tokenizer.
    pub tokenizer: Tokenizer,
    /// What loading found.
    pub report: LoadReport,
}

impl TextModel {
    /// Loads the model at `path` (GGUF file or folder) with `weights` on `device`.
    pub fn load(path: &Path, weights: Weights, device: &Device) -> Result<Self> {
        let (model, report) = Llama::load(path, weights, device)?;
        let tokenizer = if path.is_file() {
            Tokenizer::from_gguf(&Gguf::open(path)?)?
        } else {
            Tokenizer::from_folder(path)?
        };
        Ok(Self { model, tokenizer, report })
    }

    /// The model's chat template, compiled.
    pub fn chat_template(&self) -> Result<ChatTemplate> {
        ChatTemplate::from_config(self.tokenizer.config())
    }
}
