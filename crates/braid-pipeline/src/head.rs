//! A classification head: masked mean pooling over an encoder's tokens and one linear
//! layer (`head.weight [classes, D]`, `head.bias`), stored as `head.safetensors`. A model
//! directory with a head and no language model is a classifier (the HAPT activity model).

use braid_core::{Error, Features, Result};
use braid_nn::{mean_pool, Linear};
use candle_core::{DType, Module, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

/// `[head]` in `pipeline.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeadConfig {
    /// Class names, in label order.
    pub classes: Vec<String>,
}

/// `[contrastive]` in `pipeline.toml`: an image encoder trained into a space shared with
/// a frozen text tower (CLIP / LiT), its projections in `contrastive.safetensors`
/// (`visual_projection.weight`, and `text_projection.weight` when `text_projection`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContrastiveConfig {
    /// The frozen text tower it was trained against (registered name or path).
    pub text: String,
    /// The text tower's embedding width.
    pub text_dim: usize,
    /// Width of the shared space (`text_dim` when there is no text projection).
    pub embed_dim: usize,
    /// Whether the text side has a trained projection.
    pub text_projection: bool,
    /// The trained `ln(1/τ)`.
    pub logit_scale: f64,
}

/// The weights file of the contrastive projections.
pub const CONTRASTIVE_FILE: &str = "contrastive.safetensors";

/// Pooling + linear layer.
#[derive(Debug, Clone)]
pub struct Head {
    linear: Linear,
    classes: Vec<String>,
}

impl Head {
    /// A head for `cfg.classes` over `in_dim`-wide tokens, its variables under `vb`.
    pub fn new(cfg: &HeadConfig, in_dim: usize, vb: VarBuilder) -> Result<Self> {
        if cfg.classes.len() < 2 {
            return Err(Error::config(
                "head.classes",
                format!("a classifier needs at least 2 classes, got {}", cfg.classes.len()),
            ));
        }
        let linear = Linear::new(in_dim, cfg.classes.len(), true, vb.pp("head"))?;
        Ok(Self { linear, classes: cfg.classes.clone() })
    }

    /// Class names, in label order.
    pub fn classes(&self) -> &[String] {
        &self.classes
    }

    /// features: tokens [batch, n, D] with their mask -> logits [batch, classes]
    pub fn logits(&self, f: &Features) -> Result<Tensor> {
        let mask = match &f.mask {
            Some(m) => m.clone(),
            None => Tensor::ones(f.tokens.dims()[..2].to_vec(), DType::F32, f.tokens.device())?,
        };
        Ok(self.linear.forward(&mean_pool(&f.tokens, &mask)?)?)
    }
}
