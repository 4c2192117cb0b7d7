//! Special tokens, BOS policy and chat template, from GGUF metadata or a Hugging Face
//! folder's `tokenizer_config.json` (+ `chat_template.jinja`, `generation_config.json`).

use std::path::Path;

use braid_core::checkpoint::Gguf;
use braid_core::{Error, Result};
use serde_json::Value;

/// What a model's tokenizer files say beyond the vocabulary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenizerConfig {
    /// Beginning-of-sequence token, as text.
    pub bos_token: Option<String>,
    /// Its id.
    pub bos_id: Option<u32>,
    /// End-of-sequence token, as text (the chat template's `eos_token`).
    pub eos_token: Option<String>,
    /// Ids that end generation.
    pub eos_ids: Vec<u32>,
    /// Whether encoding with special tokens prepends BOS.
    pub add_bos_token: bool,
    /// The Jinja chat template.
    pub chat_template: Option<String>,
    /// Where the chat template was read from (a file, and the key within it), for errors.
    pub chat_template_origin: Option<String>,
}

impl TokenizerConfig {
    /// From `tokenizer.ggml.{bos,eos}_token_id`, `tokenizer.ggml.add_bos_token` and
    /// `tokenizer.chat_template`.
    pub fn from_gguf(gguf: &Gguf) -> Result<Self> {
        let tokens = gguf.get_str_array("tokenizer.ggml.tokens")?;
        let id = |key: &str| gguf.get_u32(key).ok().filter(|&i| (i as usize) < tokens.len());
        let text = |i: Option<u32>| i.and_then(|i| tokens.get(i as usize)).map(|s| s.to_string());
        let (bos_id, eos_id) =
            (id("tokenizer.ggml.bos_token_id"), id("tokenizer.ggml.eos_token_id"));
        let add_bos_token = match gguf.get("tokenizer.ggml.add_bos_token") {
            Some(candle_core::quantized::gguf_file::Value::Bool(b)) => *b,
            _ => false,
        };
        let mut eos_ids: Vec<u32> = eos_id.into_iter().collect();
        // llama.cpp also stops at end-of-turn tokens.
        if let Some(eot) = id("tokenizer.ggml.eot_token_id") {
            if !eos_ids.contains(&eot) {
                eos_ids.push(eot);
            }
        }
        Ok(Self {
            bos_token: text(bos_id),
            bos_id,
            eos_token: text(eos_id),
            eos_ids,
            add_bos_token,
            chat_template: gguf.get_str("tokenizer.chat_template").ok().map(str::to_string),
            chat_template_origin: Some(format!(
                "{} (tokenizer.chat_template)",
                gguf.path().display()
            )),
        })
    }

    /// From the files beside `tokenizer.json`; missing files leave defaults.
    pub fn from_folder(dir: &Path, tok: &tokenizers::Tokenizer) -> Result<Self> {
        let cfg = read_json(&dir.join("tokenizer_config.json"))?.unwrap_or(Value::Null);
        let token = |key: &str| match &cfg[key] {
            Value::String(s) => Some(s.clone()),
            Value::Object(o) => o.get("content").and_then(Value::as_str).map(str::to_string),
            _ => None,
        };
        let (bos_token, eos_token) = (token("bos_token"), token("eos_token"));
        let bos_id = bos_token.as_deref().and_then(|t| tok.token_to_id(t));
        let mut eos_ids: Vec<u32> =
            eos_token.as_deref().and_then(|t| tok.token_to_id(t)).into_iter().collect();
        if let Some(gen) = read_json(&dir.join("generation_config.json"))? {
            let extra = match &gen["eos_token_id"] {
                Value::Number(n) => n.as_u64().into_iter().collect(),
                Value::Array(a) => a.iter().filter_map(Value::as_u64).collect(),
                _ => Vec::new(),
            };
            for id in extra.into_iter().filter_map(|i| u32::try_from(i).ok()) {
                if !eos_ids.contains(&id) {
                    eos_ids.push(id);
                }
            }
        }
        let jinja = dir.join("chat_template.jinja");
        let (chat_template, origin) = if jinja.is_file() {
            (
                Some(std::fs::read_to_string(&jinja).map_err(|e| Error::io(&jinja, e))?),
                jinja.display().to_string(),
            )
        } else {
            (
                template_field(&cfg["chat_template"]),
                format!("{} (chat_template)", dir.join("tokenizer_config.json").display()),
            )
        };
        Ok(Self {
            bos_token,
            bos_id,
            eos_token,
            eos_ids,
            add_bos_token: cfg["add_bos_token"].as_bool().unwrap_or(false),
            chat_template,
            chat_template_origin: Some(origin),
        })
    }
}

/// `chat_template` is a string, or a list of `{name, template}` of which `default` is used.
fn template_field(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Array(items) => items
            .iter()
            .find(|t| t["name"] == "default")
            .or_else(|| items.first())
            .and_then(|t| t["template"].as_str())
            .map(str::to_string),
        _ => None,
    }
}

fn read_json(path: &Path) -> Result<Option<Value>> {
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map(Some).map_err(|e| Error::format(path, e.to_string()))
}
