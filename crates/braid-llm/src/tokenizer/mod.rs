//! The text side of a language model: a `tokenizers` pipeline read from `tokenizer.json`
//! (Hugging Face folders) or rebuilt from GGUF metadata, with the model's special tokens
//! and chat template. Reference: `transformers.PreTrainedTokenizerFast`,
//! llama.cpp `llama-vocab.cpp`.

mod config;
mod gguf;
mod stream;

use std::path::Path;

use braid_core::checkpoint::Gguf;
use braid_core::{Error, Result};

pub use config::TokenizerConfig;
pub use stream::TokenStream;

/// A tokenizer with the special tokens and chat template its model was trained with.
#[derive(Debug, Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    config: TokenizerConfig,
}

fn tok_err(e: impl std::fmt::Display) -> Error {
    Error::Invalid(format!("tokenizer: {e}"))
}

impl Tokenizer {
    /// Rebuilds the tokenizer a GGUF file describes (`tokenizer.ggml.*`,
    /// `tokenizer.chat_template`).
    pub fn from_gguf(gguf: &Gguf) -> Result<Self> {
        let json = gguf::tokenizer_json(gguf)?;
        let inner = tokenizers::Tokenizer::from_bytes(json.to_string().as_bytes())
            .map_err(|e| Error::format(gguf.path(), format!("tokenizer: {e}")))?;
        let config = TokenizerConfig::from_gguf(gguf)?;
        Ok(Self { inner, config })
    }

    /// Loads `dir/tokenizer.json` and, when present, `tokenizer_config.json`,
    /// `chat_template.jinja` and `generation_config.json`.
    pub fn from_folder(dir: &Path) -> Result<Self> {
        let path = dir.join("tokenizer.json");
        let inner = tokenizers::Tokenizer::from_file(&path)
            .map_err(|e| Error::format(&path, e.to_string()))?;
        let config = TokenizerConfig::from_folder(dir, &inner)?;
        Ok(Self { inner, config })
    }

    /// Wraps an existing pipeline.
    pub fn new(inner: tokenizers::Tokenizer, config: TokenizerConfig) -> Self {
        Self { inner, config }
    }

    /// Special tokens, template and flags.
    pub fn config(&self) -> &TokenizerConfig {
        &self.config
    }

    /// Vocabulary size including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Token ids of `text`. Special tokens written in the text (`<|im_start|>`) are
    /// recognised; `add_special` adds the BOS token when the model wants one
    /// (`add_bos_token`) and runs the file's post-processor.
    pub fn encode(&self, text: &str, add_special: bool) -> Result<Vec<u32>> {
        let enc = self.inner.encode_fast(text, add_special).map_err(tok_err)?;
        let mut ids = enc.get_ids().to_vec();
        if add_special && self.config.add_bos_token {
            if let Some(bos) = self.config.bos_id {
                if ids.first() != Some(&bos) {
                    ids.insert(0, bos);
                }
            }
        }
        Ok(ids)
    }

    /// Text of `ids`; `skip_special` drops special tokens.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        self.inner.decode(ids, skip_special).map_err(tok_err)
    }

    /// The id of a token, if it is in the vocabulary.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The spelling of a token id.
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// Ids that end generation (the EOS token and any the generation config adds).
    pub fn eos_ids(&self) -> &[u32] {
        &self.config.eos_ids
    }

    /// Adds `token` as a special token (matched whole, dropped by a skip-special decode)
    /// unless the vocabulary has it; returns its id. An added token's id lies past the
    /// model's embedding table: it can stand only for a placeholder that is replaced
    /// before the model sees it (a multimodal pipeline's `<image>`).
    pub fn add_special_token(&mut self, token: &str) -> Result<u32> {
        if let Some(id) = self.token_to_id(token) {
            return Ok(id);
        }
        self.inner
            .add_special_tokens([tokenizers::AddedToken::from(token.to_string(), true)])
            .map_err(tok_err)?;
        self.token_to_id(token)
            .ok_or_else(|| Error::Invalid(format!("tokenizer: `{token}` could not be added")))
    }

    /// An incremental decoder for streaming generated tokens as text.
    pub fn stream(&self, skip_special: bool) -> TokenStream<'_> {
        TokenStream::new(self, skip_special)
    }
}

#[cfg(test)]
mod tests;
