//! A `tokenizer.json` tokenizer (Hugging Face `tokenizers`: WordPiece for BERT, byte-level
//! BPE for CLIP and LLaMA) with truncation to the model's limit that is counted, never
//! silent, and right padding into `[batch, seq]` tensors with an attention mask.
//! Reference: `transformers.PreTrainedTokenizerFast.__call__(padding=True, truncation=True)`.

use std::path::Path;

use braid_core::{Error, Result};
use candle_core::{Device, Tensor};
use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

/// One text's token ids (special tokens included) and whether it was cut to fit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    /// Token ids, at most the tokenizer's `max_length`.
    pub ids: Vec<u32>,
    /// True when the text had more tokens than `max_length` and the tail was dropped.
    pub truncated: bool,
}

/// A right-padded batch.
#[derive(Debug, Clone)]
pub struct TokenBatch {
    /// Token ids `[batch, seq]` (u32), `seq` the longest row.
    pub ids: Tensor,
    /// 1 for real tokens, 0 for padding, `[batch, seq]` (f32).
    pub mask: Tensor,
    /// Real tokens per row.
    pub lengths: Vec<usize>,
    /// Rows that were truncated.
    pub truncated: usize,
}

/// A tokenizer with a fixed truncation limit and padding id.
#[derive(Debug, Clone)]
pub struct TextTokenizer {
    inner: Tokenizer,
    max_length: usize,
    pad_id: u32,
}

const CLIP_BOS: &str = "<|startoftext|>";
const CLIP_EOS: &str = "<|endoftext|>";
/// CLIP's word split (`CLIPTokenizer.pat`).
const CLIP_SPLIT: &str =
    r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+";

/// Tokens tried, in order, as the padding token when `tokenizer.json` sets none.
const PAD_TOKENS: [&str; 4] = ["[PAD]", "<pad>", "<|endoftext|>", "</s>"];

impl TextTokenizer {
    /// Loads `tokenizer.json`, truncating every text to `max_length` tokens (special tokens
    /// included). The file's own padding and truncation settings are replaced: rows are
    /// padded to the longest in each batch.
    pub fn from_file(path: &Path, max_length: usize) -> Result<Self> {
        let inner = Tokenizer::from_file(path).map_err(|e| Error::format(path, e.to_string()))?;
        Self::from_tokenizer(inner, max_length, path)
    }

    /// The tokenizer of OpenAI's CLIP (what `CLIPTokenizer` builds from the `vocab.json`
    /// and `merges.txt` that Stable Diffusion folders ship): NFC, whitespace squeezed,
    /// lower case, CLIP's split pattern, byte-level BPE with `</w>` word ends,
    /// `<|startoftext|> ... <|endoftext|>`. Reference: transformers'
    /// `convert_slow_tokenizer.CLIPConverter`.
    pub fn from_clip_vocab(vocab: &Path, merges: &Path, max_length: usize) -> Result<Self> {
        let read = |p: &Path| std::fs::read_to_string(p).map_err(|e| Error::io(p, e));
        let vocab_map: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&read(vocab)?).map_err(|e| Error::format(vocab, e.to_string()))?;
        let id = |tok: &str| {
            vocab_map
                .get(tok)
                .and_then(serde_json::Value::as_u64)
                .ok_or_else(|| Error::format(vocab, format!("no `{tok}` in the vocabulary")))
        };
        let (bos, eos) = (id(CLIP_BOS)?, id(CLIP_EOS)?);
        let merges: Vec<String> = read(merges)?
            .lines()
            .filter(|l| !l.starts_with("#version") && !l.trim().is_empty())
            .map(str::to_string)
            .collect();
        let special = |id: u64, content: &str| {
            serde_json::json!({"id": id, "content": content, "single_word": false, "lstrip": false,
                               "rstrip": false, "normalized": false, "special": true})
        };
        let spec = serde_json::json!({
            "version": "1.0", "truncation": null, "padding": null,
            "added_tokens": [special(bos, CLIP_BOS), special(eos, CLIP_EOS)],
            "normalizer": {"type": "Sequence", "normalizers": [
                {"type": "NFC"}, {"type": "Replace", "pattern": {"Regex": "\\s+"}, "content": " "},
                {"type": "Lowercase"}]},
            "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": CLIP_SPLIT}, "behavior": "Removed", "invert": true},
                {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}]},
            "post_processor": {"type": "RobertaProcessing", "sep": [CLIP_EOS, eos], "cls": [CLIP_BOS, bos],
                               "trim_offsets": false, "add_prefix_space": false},
            "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
            "model": {"type": "BPE", "dropout": null, "unk_token": CLIP_EOS, "continuing_subword_prefix": null,
                      "end_of_word_suffix": "</w>", "fuse_unk": false, "byte_fallback": false,
                      "ignore_merges": false, "vocab": vocab_map, "merges": merges}
        });
        let inner: Tokenizer =
            serde_json::from_value(spec).map_err(|e| Error::format(vocab, e.to_string()))?;
        Self::from_tokenizer(inner, max_length, vocab)
    }

    /// Wraps a loaded tokenizer (`origin` names it in errors).
    fn from_tokenizer(mut inner: Tokenizer, max_length: usize, origin: &Path) -> Result<Self> {
        if max_length < 2 {
            return Err(Error::config(
                "max_length",
                format!("{max_length} leaves no room for a token"),
            ));
        }
        let pad_id = inner
            .get_padding()
            .map(|p| p.pad_id)
            .or_else(|| PAD_TOKENS.iter().find_map(|t| inner.token_to_id(t)))
            .unwrap_or(0);
        inner.with_padding(None);
        let trunc = TruncationParams {
            direction: TruncationDirection::Right,
            max_length,
            strategy: TruncationStrategy::LongestFirst,
            stride: 0,
        };
        inner.with_truncation(Some(trunc)).map_err(|e| Error::format(origin, e.to_string()))?;
        Ok(Self { inner, max_length, pad_id })
    }

    /// Pads with `token` (a `tokenizer_config.json`'s `pad_token`) instead; an error if the
    /// vocabulary lacks it.
    pub fn with_pad_token(mut self, token: &str) -> Result<Self> {
        self.pad_id = self.inner.token_to_id(token).ok_or_else(|| {
            Error::config("pad_token", format!("`{token}` is not in the vocabulary"))
        })?;
        Ok(self)
    }

    /// The truncation limit in tokens.
    pub fn max_length(&self) -> usize {
        self.max_length
    }

    /// The id used for padding.
    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// The id of `token` in the vocabulary, if present.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Tokenizes one text with the model's special tokens.
    pub fn encode(&self, text: &str) -> Result<Encoded> {
        let enc = self
            .inner
            .encode_fast(text, true)
            .map_err(|e| Error::Invalid(format!("tokenizer: {e}")))?;
        // With stride 0, truncation moves the dropped tail into `overflowing`.
        Ok(Encoded { ids: enc.get_ids().to_vec(), truncated: !enc.get_overflowing().is_empty() })
    }

    /// Tokenizes and pads a batch. texts: N strings -> ids, mask `[N, longest]`
    pub fn encode_batch(&self, texts: &[&str], device: &Device) -> Result<TokenBatch> {
        let encoded = texts.iter().map(|t| self.encode(t)).collect::<Result<Vec<_>>>()?;
        self.pad(&encoded, device)
    }

    /// Right-pads already encoded rows. rows: N -> ids, mask `[N, longest]`
    pub fn pad(&self, rows: &[Encoded], device: &Device) -> Result<TokenBatch> {
        let seq = rows.iter().map(|r| r.ids.len()).max().unwrap_or(0);
        let mut ids = Vec::with_capacity(rows.len() * seq);
        let mut mask = Vec::with_capacity(rows.len() * seq);
        for r in rows {
            ids.extend_from_slice(&r.ids);
            ids.extend(std::iter::repeat_n(self.pad_id, seq - r.ids.len()));
            mask.extend(std::iter::repeat_n(1f32, r.ids.len()));
            mask.extend(std::iter::repeat_n(0f32, seq - r.ids.len()));
        }
        Ok(TokenBatch {
            ids: Tensor::from_vec(ids, (rows.len(), seq), device)?,
            mask: Tensor::from_vec(mask, (rows.len(), seq), device)?,
            lengths: rows.iter().map(|r| r.ids.len()).collect(),
            truncated: rows.iter().filter(|r| r.truncated).count(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn clip_dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/clip/p8_40")
    }

    fn clip_tokenizer() -> PathBuf {
        clip_dir().join("tokenizer.json")
    }

    #[test]
    fn byte_level_bpe_matches_python_tokenizers() {
        let tok = TextTokenizer::from_file(&clip_tokenizer(), 77).unwrap();
        let text = std::fs::read_to_string(clip_dir().join("tokenizer_expected.json")).unwrap();
        let expected: std::collections::BTreeMap<String, Vec<u32>> =
            serde_json::from_str(&text).unwrap();
        for (prompt, ids) in expected {
            assert_eq!(tok.encode(&prompt).unwrap(), Encoded { ids, truncated: false }, "{prompt}");
        }
    }

    #[test]
    fn truncation_is_counted_and_rows_are_padded() {
        let tok = TextTokenizer::from_file(&clip_tokenizer(), 7).unwrap();
        let batch = tok
            .encode_batch(
                &["a photo of a dog", "a photo of a very very very large cat"],
                &Device::Cpu,
            )
            .unwrap();
        assert_eq!(batch.ids.dims(), &[2, 7]);
        assert_eq!(batch.truncated, 1);
        let mask = batch.mask.to_vec2::<f32>().unwrap();
        assert_eq!(batch.lengths[1], 7);
        assert_eq!(mask[0].iter().sum::<f32>() as usize, batch.lengths[0]);
    }

    #[test]
    fn missing_file_names_the_path() {
        let err = TextTokenizer::from_file(Path::new("/no/such/tokenizer.json"), 8)
            .unwrap_err()
            .to_string();
        assert!(err.contains("/no/such/tokenizer.json"), "{err}");
    }
}
