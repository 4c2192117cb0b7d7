//! A `diffusion` recipe: a text-conditioned image generator in the Stable Diffusion
//! layout (diffusers' `UNet2DConditionModel` and a CLIP text encoder, trained together
//! from scratch) on a captioned image dataset in LLaVA JSON (each sample an image and a
//! caption as its reply, as `braid data make easy-vqa` writes `captions_train.json`).
//! Pixel space: the images are resized to `size` and denoised directly, no autoencoder.
//! The objective is DDPM's (Ho et al. 2020): predict the noise added at a uniformly drawn
//! timestep; the caption is dropped (replaced by the empty prompt) with chance
//! `cond_dropout`, so the model also learns the unconditional branch classifier-free
//! guidance needs (Ho & Salimans 2022).
//!
//! ```toml
//! stage = "diffusion"
//! out_dir = "runs/draw/generator"
//! [data]
//! path = "runs/data/easy-vqa/captions_train.json"
//! eval_path = "runs/data/easy-vqa/captions_test.json"
//! size = 32
//! [model]
//! cond_dropout = 0.1
//! prediction = "sample"       # epsilon | sample | v_prediction
//! [model.unet]                # diffusers UNet2DConditionModel fields
//! block_out_channels = [32, 64, 64]
//! [model.text]                # transformers CLIPTextConfig fields (vocab from the captions)
//! hidden_size = 64
//! [train]
//! max_steps = 2000
//! ```

mod run;
mod task;

use std::path::PathBuf;

use braid_core::{Error, Result};
use braid_encoders::text::ClipTextConfig;
use braid_generators::diffusion::{Prediction, UNetConfig};
use serde::{Deserialize, Serialize};

use crate::TrainConfig;

pub use run::{train_diffusion, DiffusionReport};
pub use task::{DiffusionExamples, DiffusionTask};

/// A `diffusion` run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiffusionRecipe {
    /// Run directory (the trained model in `model/`).
    pub out_dir: PathBuf,
    /// The images and captions.
    pub data: DiffusionData,
    /// The generator.
    pub model: DiffusionModel,
    /// Optimisation.
    #[serde(default)]
    pub train: TrainConfig,
}

/// Captioned images.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiffusionData {
    /// LLaVA JSON: each sample one image, its caption the last reply.
    pub path: PathBuf,
    /// Held-out samples in the same form (their denoising loss is reported).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_path: Option<PathBuf>,
    /// Images are resized (box filter) to `size` x `size`.
    #[serde(default = "default_size")]
    pub size: usize,
}

fn default_size() -> usize {
    32
}

/// The generator's shape and conditioning.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiffusionModel {
    /// The UNet (`in_channels` and `out_channels` are set to 3, `sample_size` to the data's
    /// size, `cross_attention_dim` to the text encoder's width).
    #[serde(default = "default_unet")]
    pub unet: UNetConfig,
    /// The text encoder (`vocab_size` and the end-of-text id come from the vocabulary
    /// built from the captions).
    #[serde(default = "default_text")]
    pub text: ClipTextConfig,
    /// Chance that a caption is replaced by the empty prompt in training.
    #[serde(default = "default_cond_dropout")]
    pub cond_dropout: f64,
    /// What the UNet predicts: `epsilon` (the noise, DDPM), `sample` (the clean image: the
    /// sampler's estimate is always an image, which converges sooner on small budgets) or
    /// `v_prediction`.
    #[serde(default = "default_prediction")]
    pub prediction: Prediction,
}

fn default_prediction() -> Prediction {
    Prediction::Epsilon
}

fn default_cond_dropout() -> f64 {
    0.1
}

/// A UNet small enough to train on two cores: 32 -> 16 -> 8, cross-attention at 16 and 8.
pub fn default_unet() -> UNetConfig {
    use braid_generators::diffusion::config::{BlockKind::*, PerBlock};
    UNetConfig {
        sample_size: 32,
        in_channels: 3,
        out_channels: 3,
        down_block_types: vec![Plain, CrossAttn, CrossAttn],
        up_block_types: vec![CrossAttn, CrossAttn, Plain],
        block_out_channels: vec![32, 64, 64],
        layers_per_block: 1,
        attention_head_dim: PerBlock::One(4),
        cross_attention_dim: 64,
        norm_num_groups: 8,
        ..UNetConfig::default()
    }
}

/// A two-layer CLIP text tower of width 64.
pub fn default_text() -> ClipTextConfig {
    ClipTextConfig {
        vocab_size: 0,
        hidden_size: 64,
        intermediate_size: 128,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        max_position_embeddings: 8,
        ..ClipTextConfig::default()
    }
}

impl DiffusionRecipe {
    /// Checks what can be checked before reading data.
    pub fn validate(&self) -> Result<()> {
        let d = &self.data;
        let blocks = self.model.unet.block_out_channels.len().max(1);
        let step = 1usize << (blocks - 1);
        if d.size == 0 || d.size % step != 0 || d.size > 512 {
            return Err(Error::config(
                "data.size",
                format!("{}: must be a multiple of {step} up to 512", d.size),
            ));
        }
        if !(0.0..1.0).contains(&self.model.cond_dropout) {
            return Err(Error::config(
                "model.cond_dropout",
                format!("{}: must be in [0, 1)", self.model.cond_dropout),
            ));
        }
        self.model.unet.validate()?;
        let u = &self.model.unet;
        let caps = [
            ("model.unet.block_out_channels", u.block_out_channels.len(), 8),
            (
                "model.unet.block_out_channels",
                u.block_out_channels.iter().copied().max().unwrap_or(0),
                2048,
            ),
            ("model.unet.layers_per_block", u.layers_per_block, 16),
            ("model.text.hidden_size", self.model.text.hidden_size, 4096),
            ("model.text.num_hidden_layers", self.model.text.num_hidden_layers, 48),
            ("model.text.intermediate_size", self.model.text.intermediate_size, 16384),
            ("model.text.max_position_embeddings", self.model.text.max_position_embeddings, 1024),
        ];
        for (field, value, cap) in caps {
            if value > cap {
                return Err(Error::config(field, format!("{value}: at most {cap} here")));
            }
        }
        let t = &self.model.text;
        if t.hidden_size == 0
            || t.num_attention_heads == 0
            || t.hidden_size % t.num_attention_heads != 0
        {
            return Err(Error::config(
                "model.text",
                format!(
                    "hidden_size {} must split into {} heads",
                    t.hidden_size, t.num_attention_heads
                ),
            ));
        }
        if t.max_position_embeddings < 3 {
            return Err(Error::config("model.text.max_position_embeddings", "at least 3 tokens"));
        }
        self.train.validate()
    }
}
