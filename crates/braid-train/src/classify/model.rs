//! A classifier: any encoder, masked mean pooling over its tokens, and a linear head
//! (`head.weight [classes, D]`, `head.bias`). The encoder and the head keep separate
//! `VarMap`s, so a stage can train the head alone (linear probing) or both.
//!
//! On disk (IMU encoders), a directory: the encoder as `braid_encoders::imu::ImuModel`
//! writes it (`imu_encoder.json`, `model.safetensors`, `imu_stats.json`) plus
//! `head.safetensors` and `classes.json`.

use std::path::Path;

use braid_core::checkpoint::Checkpoint;
use braid_core::{Error, Result};
use braid_data::imu::ChannelStats;
use braid_encoders::imu::{ImuEncoderConfig, ImuModel};
use braid_encoders::Encoder;
use braid_nn::{mean_pool, Linear};
use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{VarBuilder, VarMap};

/// Class names of a saved classifier.
pub const CLASSES_FILE: &str = "classes.json";
/// The head's variables in a saved classifier.
pub const HEAD_FILE: &str = "head.safetensors";

/// Encoder + pooling + linear head.
pub struct Classifier {
    /// The encoder.
    pub encoder: Box<dyn Encoder>,
    /// The head.
    pub head: Linear,
    /// Class names, in label order.
    pub classes: Vec<String>,
    /// Parameters, encoder and head (0 until known: set when loaded).
    pub params: usize,
}

impl Classifier {
    /// A head for `classes` on top of `encoder`, its variables created in `head_vb`.
    pub fn new(encoder: Box<dyn Encoder>, classes: Vec<String>, head_vb: VarBuilder) -> Result<Self> {
        if classes.len() < 2 {
            return Err(Error::config("classes", format!("a classifier needs at least 2 classes, got {}", classes.len())));
        }
        let head = Linear::new(encoder.output_dim(), classes.len(), true, head_vb.pp("head"))?;
        Ok(Self { encoder, head, classes, params: 0 })
    }

    /// x: encoder input (see `braid_encoders::Encoder`), mask: its padding mask ->
    /// logits [batch, classes]
    pub fn logits(&self, x: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let f = self.encoder.encode(x, mask)?;
        let mask = match f.mask {
            Some(m) => m,
            None => Tensor::ones(f.tokens.dims()[..2].to_vec(), DType::F32, f.tokens.device())?,
        };
        Ok(self.head.forward(&mean_pool(&f.tokens, &mask)?)?)
    }

    /// Writes an IMU classifier directory (see the module docs).
    pub fn save_imu(dir: &Path, config: &ImuEncoderConfig, encoder_vars: &VarMap, head_vars: &VarMap, stats: Option<&ChannelStats>, classes: &[String]) -> Result<()> {
        ImuModel::save(dir, config, encoder_vars, stats)?;
        head_vars.save(dir.join(HEAD_FILE))?;
        let path = dir.join(CLASSES_FILE);
        let json = serde_json::to_string_pretty(classes).map_err(|e| Error::format(&path, e.to_string()))?;
        std::fs::write(&path, json).map_err(|e| Error::io(&path, e))
    }

    /// Loads an IMU classifier directory; returns it with the input statistics to apply.
    pub fn load_imu(dir: &Path, device: &Device) -> Result<(Self, Option<ChannelStats>)> {
        let (imu, enc_report) = ImuModel::load(dir, device)?;
        let path = dir.join(CLASSES_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let classes: Vec<String> = serde_json::from_str(&text).map_err(|e| Error::format(&path, e.to_string()))?;
        let head_path = dir.join(HEAD_FILE);
        let ckpt = Checkpoint::open(&head_path)?;
        let (vb, tracker) = ckpt.var_builder(DType::F32, device);
        let head = Linear::new(imu.encoder.output_dim(), classes.len(), true, vb.pp("head"))?;
        let head_report = tracker.report().into_result(&head_path)?;
        let params = enc_report.total_params + head_report.total_params;
        Ok((Self { encoder: imu.encoder, head, classes, params }, imu.stats))
    }
}
