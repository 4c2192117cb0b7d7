//! Loading the Whisper encoder from a Hugging Face folder (`config.json` +
//! `model.safetensors`) of a `WhisperModel` (`encoder.*`), a
//! `WhisperForConditionalGeneration` (`model.encoder.*`) or a bare encoder.

use std::path::Path;

use braid_core::checkpoint::{Checkpoint, LoadReport};
use braid_core::{Error, Result};
use candle_core::{DType, Device};

use super::{WhisperConfig, WhisperEncoder};
use crate::shape::Shape;

/// Where the encoder sits in the checkpoints transformers writes.
const PREFIXES: [&str; 3] = ["model.encoder.", "encoder.", ""];

impl WhisperConfig {
    /// Reads the encoder fields of a `config.json` (other fields are ignored).
    pub fn from_json_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let cfg: Self =
            serde_json::from_str(&text).map_err(|e| Error::format(path, e.to_string()))?;
        let shape = Shape {
            hidden: ("d_model", cfg.d_model),
            heads: ("encoder_attention_heads", cfg.encoder_attention_heads),
            layers: ("encoder_layers", cfg.encoder_layers),
            inner: ("encoder_ffn_dim", cfg.encoder_ffn_dim),
            eps: None,
            counts: vec![
                ("num_mel_bins", cfg.num_mel_bins),
                ("max_source_positions", cfg.max_source_positions),
            ],
        };
        shape.check(path, "")?;
        Ok(cfg)
    }
}

impl WhisperEncoder {
    /// Loads `dir/config.json` and `dir/model.safetensors`; fails, naming the tensors,
    /// unless every encoder parameter is present with its shape and every stored tensor
    /// under the encoder's prefix is used (decoder tensors are left alone).
    pub fn from_folder(dir: &Path, dtype: DType, device: &Device) -> Result<(Self, LoadReport)> {
        let cfg = WhisperConfig::from_json_file(&dir.join("config.json"))?;
        let path = dir.join("model.safetensors");
        if !path.is_file() {
            return Err(Error::format(dir, "no model.safetensors in this folder"));
        }
        let ckpt = Checkpoint::open(&path)?;
        let prefix = PREFIXES
            .into_iter()
            .find(|p| ckpt.contains(&format!("{p}conv1.weight")))
            .ok_or_else(|| Error::format(&path, "no Whisper encoder here (no conv1.weight under model.encoder., encoder. or the root)"))?;
        let (vb, tracker) = ckpt.var_builder(dtype, device);
        let vb = match prefix.strip_suffix('.') {
            Some(p) => vb.pp(p),
            None => vb,
        };
        let model = Self::new(&cfg, vb)?;
        let mut report = tracker.report();
        report.unexpected.retain(|n| n.starts_with(prefix));
        Ok((model, report.into_result(&path)?))
    }
}
