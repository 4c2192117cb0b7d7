//! Loading a LLaMA-family decoder from the files users have: a Hugging Face folder
//! (`config.json` + `model.safetensors`) or a GGUF file.

use std::path::Path;

use braid_core::checkpoint::{Checkpoint, Gguf, LoadReport};
use braid_core::{Error, Result};
use candle_core::{DType, Device};

use super::{Llama, LlamaConfig};

impl Llama {
    /// Loads a GGUF file, its tensors dequantized to `dtype` (so gradients can pass) and
    /// renamed to the Hugging Face layout; fails unless every tensor fits.
    pub fn from_gguf(path: &Path, dtype: DType, device: &Device) -> Result<(Self, LoadReport)> {
        let gguf = Gguf::open(path)?;
        let cfg = LlamaConfig::from_gguf(&gguf)?;
        let ckpt = Checkpoint::from_gguf(gguf).with_remap(&cfg.gguf_remap())?;
        let (vb, tracker) = ckpt.var_builder(dtype, device);
        let model = Self::new(&cfg, vb)?;
        let report = tracker.report().into_result(path)?;
        Ok((model, report))
    }

    /// Loads `dir/config.json` and `dir/model.safetensors` (or a sharded
    /// `model.safetensors.index.json`); fails unless every tensor fits.
    pub fn from_folder(dir: &Path, dtype: DType, device: &Device) -> Result<(Self, LoadReport)> {
        let cfg = LlamaConfig::from_json_file(&dir.join("config.json"))?;
        let path = ["model.safetensors", "model.safetensors.index.json"]
            .into_iter()
            .map(|f| dir.join(f))
            .find(|p| p.is_file())
            .ok_or_else(|| Error::format(dir, "no model.safetensors or model.safetensors.index.json in this folder"))?;
        let ckpt = Checkpoint::open(&path)?;
        let (vb, tracker) = ckpt.var_builder(dtype, device);
        let model = Self::new(&cfg, vb)?;
        let report = tracker.report().into_result(&path)?;
        Ok((model, report))
    }
}
