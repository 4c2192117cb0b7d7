//! Loading BERT from a Hugging Face folder (`config.json` + `model.safetensors`), the
//! layout of sentence-transformers' first module.

use std::path::Path;

use braid_core::checkpoint::{Checkpoint, LoadReport};
use braid_core::{Error, Result};
use candle_core::{DType, Device};

use super::{Bert, BertConfig};

/// Checkpoint entries that are buffers, not parameters (transformers ignores them too:
/// `BertModel._keys_to_ignore_on_load_unexpected`).
pub const BERT_BUFFERS: &[&str] = &["embeddings.position_ids"];

impl Bert {
    /// Loads `dir/config.json` and `dir/model.safetensors`; fails, naming the file and the
    /// tensors, unless every parameter is present with its shape and every stored tensor
    /// is used.
    pub fn from_folder(dir: &Path, dtype: DType, device: &Device) -> Result<(Self, LoadReport)> {
        let cfg = BertConfig::from_json_file(&dir.join("config.json"))?;
        let path = dir.join("model.safetensors");
        if !path.is_file() {
            return Err(Error::format(dir, "no model.safetensors in this folder"));
        }
        let ckpt = Checkpoint::open(&path)?;
        let (vb, tracker) = ckpt.var_builder(dtype, device);
        let model = Self::new(&cfg, vb)?;
        let mut report = tracker.report();
        report.unexpected.retain(|n| !BERT_BUFFERS.contains(&n.as_str()));
        Ok((model, report.into_result(&path)?))
    }
}
