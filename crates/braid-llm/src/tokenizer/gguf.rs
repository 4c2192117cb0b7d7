//! A Hugging Face `tokenizer.json` document rebuilt from GGUF metadata
//! (`tokenizer.ggml.*`), so one `tokenizers` pipeline serves both formats.
//!
//! Byte-level BPE (`tokenizer.ggml.model = gpt2`) only: the vocabulary is already spelled
//! in GPT-2's byte alphabet, merges are `"a b"` strings, control tokens (type 3) become
//! special added tokens and user-defined ones (type 4) plain added tokens, as
//! `transformers.integrations.gguf.gguf_tokenizer_mapping` does. The pre-tokenizer follows
//! `tokenizer.ggml.pre` the way llama.cpp's `llama-vocab.cpp` does (SmolLM splits digits
//! one by one).

use braid_core::checkpoint::Gguf;
use braid_core::{Error, Result};
use candle_core::quantized::gguf_file::Value;
use serde_json::{json, Value as Json};

/// GPT-2's pattern, as `tokenizers`' `ByteLevel(use_regex=true)` applies it.
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

fn byte_level(use_regex: bool) -> Json {
    json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": use_regex})
}

fn split_then_bytes(pattern: &str) -> Json {
    json!({"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated", "invert": false},
        byte_level(false),
    ]})
}

/// The pre-tokenizer for a `tokenizer.ggml.pre` value (llama.cpp `llm_tokenizer_bpe`).
fn pre_tokenizer(pre: &str) -> Json {
    match pre {
        "smollm" | "starcoder" | "refact" | "codeshell" => {
            json!({"type": "Sequence", "pretokenizers": [
                {"type": "Digits", "individual_digits": true}, byte_level(true),
            ]})
        }
        // GLM-4's `chatglm-bpe` splits as LLaMA 3 does (llama.cpp `LLAMA_VOCAB_PRE_TYPE_CHATGLM4`).
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "smaug-bpe" | "dbrx" | "chatglm-bpe" => {
            split_then_bytes(LLAMA3_SPLIT)
        }
        "qwen2" | "deepseek-r1-qwen" => split_then_bytes(QWEN2_SPLIT),
        _ => byte_level(true),
    }
}

fn i64_array(gguf: &Gguf, key: &str) -> Result<Vec<i64>> {
    let Some(Value::Array(items)) = gguf.get(key) else {
        return Err(Error::format(
            gguf.path(),
            format!("metadata key `{key}` is missing or not an array"),
        ));
    };
    items
        .iter()
        .map(|v| match *v {
            Value::I32(x) => Ok(i64::from(x)),
            Value::U32(x) => Ok(i64::from(x)),
            Value::I8(x) => Ok(i64::from(x)),
            Value::U8(x) => Ok(i64::from(x)),
            _ => {
                Err(Error::format(gguf.path(), format!("metadata key `{key}` holds a non-integer")))
            }
        })
        .collect()
}

/// `tokenizer.json` for the tokenizer a GGUF file describes.
pub(crate) fn tokenizer_json(gguf: &Gguf) -> Result<Json> {
    let model = gguf.get_str("tokenizer.ggml.model")?;
    if model != "gpt2" {
        return Err(Error::unknown("GGUF tokenizer model", model, ["gpt2"]));
    }
    let tokens = gguf.get_str_array("tokenizer.ggml.tokens")?;
    let merges: Vec<Json> = gguf
        .get_str_array("tokenizer.ggml.merges")?
        .into_iter()
        .map(|m| {
            let (a, b) = m.split_once(' ').unwrap_or((m, ""));
            json!([a, b])
        })
        .collect();
    let types = i64_array(gguf, "tokenizer.ggml.token_type").unwrap_or_default();
    let added: Vec<Json> = tokens
        .iter()
        .zip(types.iter().chain(std::iter::repeat(&1)))
        .enumerate()
        .filter(|(_, (_, &t))| t == 3 || t == 4)
        .map(|(id, (tok, &t))| {
            json!({"id": id, "content": tok, "single_word": false, "lstrip": false, "rstrip": false,
                   "normalized": false, "special": t == 3})
        })
        .collect();
    let vocab: serde_json::Map<String, Json> =
        tokens.iter().enumerate().map(|(i, t)| (t.to_string(), json!(i))).collect();
    let pre = gguf.get_str("tokenizer.ggml.pre").unwrap_or("default");
    Ok(json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": added,
        "normalizer": null, "pre_tokenizer": pre_tokenizer(pre), "post_processor": null,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                  "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
                  "ignore_merges": false, "vocab": vocab, "merges": merges},
    }))
}
