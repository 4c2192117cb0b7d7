//! Loading a LLaMA-family decoder from the files users have: a Hugging Face folder
//! (`config.json` + `model.safetensors`) or a GGUF file, trainable (dequantized to a
//! dtype) or frozen (stored types kept: quantized matmuls for inference).

use std::path::{Path, PathBuf};

use braid_core::checkpoint::{Checkpoint, Gguf, LoadReport};
use braid_core::{Error, Result};
use candle_core::{DType, Device};

use super::{frozen::FrozenLlama, Body, Llama, LlamaConfig};

/// How the weights are held once loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Weights {
    /// Dequantized to this dtype in `braid_nn` blocks; gradients reach every weight.
    Trainable(DType),
    /// Inference only, fused kernels; `dequantize: false` keeps stored types (quantized
    /// GGUF weights multiplied quantized, fastest), `true` dequantizes them to f32 (the
    /// reference numbers at the cost of memory and speed).
    Frozen {
        /// Dequantize quantized weights to f32.
        dequantize: bool,
    },
}

fn is_gguf(path: &Path) -> bool {
    path.is_file() && path.extension().is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
}

/// The config and checkpoint (Hugging Face names) of a GGUF file or a folder.
pub(super) fn open(path: &Path) -> Result<(LlamaConfig, Checkpoint)> {
    if is_gguf(path) {
        let gguf = Gguf::open(path)?;
        let cfg = LlamaConfig::from_gguf(&gguf)?;
        return Ok((cfg.clone(), Checkpoint::from_gguf(gguf).with_remap(&cfg.gguf_remap())?));
    }
    let cfg = LlamaConfig::from_json_file(&path.join("config.json"))?;
    Ok((cfg, Checkpoint::open(weights_file(path)?)?))
}

pub(super) fn weights_file(dir: &Path) -> Result<PathBuf> {
    ["model.safetensors", "model.safetensors.index.json"]
        .into_iter()
        .map(|f| dir.join(f))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            Error::format(
                dir,
                "no model.safetensors or model.safetensors.index.json in this folder",
            )
        })
}

impl Llama {
    /// Loads a GGUF file or a Hugging Face folder; fails unless every tensor fits.
    pub fn load(path: &Path, weights: Weights, device: &Device) -> Result<(Self, LoadReport)> {
        match weights {
            Weights::Frozen { dequantize } => Self::load_frozen(path, dequantize, device),
            Weights::Trainable(dtype) if is_gguf(path) => Self::from_gguf(path, dtype, device),
            Weights::Trainable(dtype) => Self::from_folder(path, dtype, device),
        }
    }

    /// Loads a GGUF file or a Hugging Face folder for inference only, weights in their
    /// stored types (quantized GGUF weights are multiplied quantized) or, with
    /// `dequantize`, in f32.
    pub fn load_frozen(
        path: &Path,
        dequantize: bool,
        device: &Device,
    ) -> Result<(Self, LoadReport)> {
        let (cfg, ckpt) = open(path)?;
        let (body, report) = FrozenLlama::load(&ckpt, &cfg, device, dequantize, None)?;
        Ok((Self { body: Body::Frozen(body), cfg }, report))
    }

    /// Loads a GGUF file, its tensors dequantized to `dtype` (so gradients can pass) and
    /// renamed to the Hugging Face layout; fails unless every tensor fits.
    pub fn from_gguf(path: &Path, dtype: DType, device: &Device) -> Result<(Self, LoadReport)> {
        let (cfg, ckpt) = open(path)?;
        let (vb, tracker) = ckpt.var_builder(dtype, device);
        let model = Self::new(&cfg, vb)?;
        let report = tracker.report().into_result(path)?;
        Ok((model, report))
    }

    /// Loads `dir/config.json` and `dir/model.safetensors` (or a sharded
    /// `model.safetensors.index.json`); fails unless every tensor fits.
    pub fn from_folder(dir: &Path, dtype: DType, device: &Device) -> Result<(Self, LoadReport)> {
        let cfg = LlamaConfig::from_json_file(&dir.join("config.json"))?;
        let path = weights_file(dir)?;
        let ckpt = Checkpoint::open(&path)?;
        let (vb, tracker) = ckpt.var_builder(dtype, device);
        let model = Self::new(&cfg, vb)?;
        let report = tracker.report().into_result(&path)?;
        Ok((model, report))
    }
}
