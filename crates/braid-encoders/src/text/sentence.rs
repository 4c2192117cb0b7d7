//! sentence-transformers models (Reimers & Gurevych 2019, "Sentence-BERT"): a folder whose
//! `modules.json` chains a Transformer (BERT, Hugging Face layout), a Pooling module
//! (`1_Pooling/config.json`) and optionally Normalize. all-MiniLM-L6-v2 is one.
//! Reference: `sentence_transformers.SentenceTransformer.encode`,
//! `sentence_transformers.models.{Transformer, Pooling, Normalize}`.

use std::path::Path;

use braid_core::checkpoint::LoadReport;
use braid_core::{Error, Result};
use braid_data::text::{Encoded, TextTokenizer};
use braid_nn::Pooling;
use candle_core::{DType, Device, Tensor};
use serde::Deserialize;

use super::{Bert, BertConfig};
use crate::image::l2_normalize;

#[derive(Debug, Deserialize)]
struct ModuleEntry {
    #[serde(default)]
    path: String,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct PoolingConfig {
    pooling_mode_cls_token: bool,
    pooling_mode_mean_tokens: bool,
    pooling_mode_max_tokens: bool,
    pooling_mode_mean_sqrt_len_tokens: bool,
    pooling_mode_lasttoken: bool,
}

#[derive(Debug, Default, Deserialize)]
struct SentenceBertConfig {
    max_seq_length: Option<usize>,
}

const KNOWN_MODULES: [&str; 3] = ["Transformer", "Pooling", "Normalize"];

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::format(path, e.to_string()))
}

/// Pooling and normalisation from `modules.json` (mean pooling, no normalisation when the
/// folder is a plain transformers model without one).
fn read_modules(dir: &Path) -> Result<(Pooling, bool)> {
    let modules_path = dir.join("modules.json");
    if !modules_path.exists() {
        return Ok((Pooling::Mean, false));
    }
    let modules: Vec<ModuleEntry> = read_json(&modules_path)?;
    let (mut pooling, mut normalize) = (None, false);
    for m in &modules {
        let short = m.kind.rsplit('.').next().unwrap_or(&m.kind);
        match short {
            "Transformer" => {}
            "Pooling" => pooling = Some(read_pooling(&dir.join(&m.path).join("config.json"))?),
            "Normalize" => normalize = true,
            other => {
                return Err(Error::unknown("sentence-transformers module", other, KNOWN_MODULES))
            }
        }
    }
    let pooling = pooling.ok_or_else(|| Error::format(&modules_path, "no Pooling module"))?;
    Ok((pooling, normalize))
}

fn read_pooling(path: &Path) -> Result<Pooling> {
    let cfg: PoolingConfig = read_json(path)?;
    let modes = [
        (cfg.pooling_mode_mean_tokens, Some(Pooling::Mean), "mean"),
        (cfg.pooling_mode_cls_token, Some(Pooling::Cls), "cls"),
        (cfg.pooling_mode_lasttoken, Some(Pooling::LastToken), "lasttoken"),
        (cfg.pooling_mode_max_tokens, None, "max"),
        (cfg.pooling_mode_mean_sqrt_len_tokens, None, "mean_sqrt_len"),
    ];
    let on: Vec<_> = modes.iter().filter(|m| m.0).collect();
    match on.as_slice() {
        [(_, Some(p), _)] => Ok(*p),
        [(_, None, name)] => Err(Error::format(
            path,
            format!("pooling mode `{name}` is not supported; known: mean, cls, lasttoken"),
        )),
        _ => Err(Error::format(path, "exactly one pooling mode must be set")),
    }
}

/// A BERT sentence encoder with its tokenizer, pooling and normalisation.
#[derive(Debug, Clone)]
pub struct SentenceEncoder {
    bert: Bert,
    tokenizer: TextTokenizer,
    pooling: Pooling,
    normalize: bool,
}

impl SentenceEncoder {
    /// Loads a sentence-transformers (or plain BERT) folder. Texts are truncated to
    /// `max_length` tokens, default `max_seq_length` of `sentence_bert_config.json`, else
    /// the model's position limit. Every checkpoint tensor must be used.
    pub fn load(
        dir: &Path,
        max_length: Option<usize>,
        device: &Device,
    ) -> Result<(Self, LoadReport)> {
        let cfg = BertConfig::from_json_file(&dir.join("config.json"))?;
        let st_path = dir.join("sentence_bert_config.json");
        let st: SentenceBertConfig =
            if st_path.exists() { read_json(&st_path)? } else { Default::default() };
        let limit = max_length.or(st.max_seq_length).unwrap_or(cfg.max_position_embeddings);
        if limit > cfg.max_position_embeddings {
            return Err(Error::config(
                "max_length",
                format!(
                    "{limit} exceeds the model's max_position_embeddings {}",
                    cfg.max_position_embeddings
                ),
            ));
        }
        let (pooling, normalize) = read_modules(dir)?;
        let tokenizer = TextTokenizer::from_file(&dir.join("tokenizer.json"), limit)?;
        let (bert, report) = Bert::from_folder(dir, DType::F32, device)?;
        Ok((Self { bert, tokenizer, pooling, normalize }, report))
    }

    /// The tokenizer (its `max_length` is the truncation limit).
    pub fn tokenizer(&self) -> &TextTokenizer {
        &self.tokenizer
    }

    /// Embedding width.
    pub fn dim(&self) -> usize {
        self.bert.config().hidden_size
    }

    /// Embeds already tokenized rows (one forward pass). rows: N -> [N, dim]
    pub fn embed_encoded(&self, rows: &[Encoded], device: &Device) -> Result<Tensor> {
        let batch = self.tokenizer.pad(rows, device)?;
        let hidden = self.bert.forward(&batch.ids, Some(&batch.mask), None)?;
        let pooled = self.pooling.forward(&hidden, &batch.mask)?;
        if self.normalize {
            l2_normalize(&pooled)
        } else {
            Ok(pooled)
        }
    }

    /// Tokenizes and embeds one batch. texts: N -> ([N, dim], texts truncated)
    pub fn embed(&self, texts: &[&str], device: &Device) -> Result<(Tensor, usize)> {
        let rows = texts.iter().map(|t| self.tokenizer.encode(t)).collect::<Result<Vec<_>>>()?;
        let truncated = rows.iter().filter(|r| r.truncated).count();
        Ok((self.embed_encoded(&rows, device)?, truncated))
    }
}

#[cfg(test)]
mod tests;
