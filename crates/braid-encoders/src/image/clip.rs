//! CLIP (Radford et al. 2021, "Learning Transferable Visual Models From Natural Language
//! Supervision") in the Hugging Face `CLIPModel` layout: the vision tower ([`Vit`]), the
//! text tower ([`ClipText`]), bias-free projections into a shared space and the learned
//! temperature; `image_features` / `text_features` equal transformers'
//! `get_image_features` / `get_text_features`.
//! Reference: `transformers.models.clip.modeling_clip.CLIPModel`.

use std::path::Path;

use braid_core::checkpoint::{Checkpoint, LoadReport};
use braid_core::{Error, Result};
use braid_nn::Linear;
use candle_core::{DType, Device, Module, Tensor, D};
use candle_nn::{Init, VarBuilder};
use serde::{Deserialize, Serialize};

use super::{Vit, VitConfig};
use crate::shape::MAX_COUNT;
use crate::text::{ClipText, ClipTextConfig};

/// A Hugging Face `CLIPConfig` (`config.json` of a `CLIPModel`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClipConfig {
    /// The text tower.
    #[serde(default)]
    pub text_config: ClipTextConfig,
    /// The vision tower.
    #[serde(default)]
    pub vision_config: VitConfig,
    /// Width of the shared embedding space.
    #[serde(default = "default_projection")]
    pub projection_dim: usize,
    /// Initial `logit_scale` (log of the inverse temperature).
    #[serde(default = "default_logit_scale")]
    pub logit_scale_init_value: f64,
}

fn default_projection() -> usize {
    512
}
fn default_logit_scale() -> f64 {
    2.6592
}

impl ClipConfig {
    /// Reads `config.json`.
    pub fn from_json_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let cfg: Self =
            serde_json::from_str(&text).map_err(|e| Error::format(path, e.to_string()))?;
        if let Some((field, msg)) = cfg.vision_config.problem() {
            return Err(Error::format(path, format!("`vision_config.{field}`: {msg}")));
        }
        cfg.text_config.shape().check(path, "text_config.")?;
        if cfg.projection_dim == 0 || cfg.projection_dim > MAX_COUNT {
            let msg = format!("must be in 1..={MAX_COUNT}, got {}", cfg.projection_dim);
            return Err(Error::format(path, format!("`projection_dim`: {msg}")));
        }
        if !cfg.logit_scale_init_value.is_finite() {
            let msg = format!("must be a finite number, got {}", cfg.logit_scale_init_value);
            return Err(Error::format(path, format!("`logit_scale_init_value`: {msg}")));
        }
        Ok(cfg)
    }
}

/// Image and text towers with their projections.
#[derive(Debug, Clone)]
pub struct Clip {
    vision: Vit,
    text: ClipText,
    visual_projection: Linear,
    text_projection: Linear,
    logit_scale: Tensor,
    cfg: ClipConfig,
}

impl Clip {
    /// Builds from `vb` at the `CLIPModel` root (`vision_model.*`, `text_model.*`,
    /// `visual_projection.weight`, `text_projection.weight`, `logit_scale`).
    pub fn new(cfg: &ClipConfig, vb: VarBuilder) -> Result<Self> {
        let p = cfg.projection_dim;
        let scale = Init::Const(cfg.logit_scale_init_value);
        Ok(Self {
            vision: Vit::new(&cfg.vision_config, vb.pp("vision_model"))?,
            text: ClipText::new(&cfg.text_config, vb.pp("text_model"))?,
            visual_projection: Linear::new(
                cfg.vision_config.hidden_size,
                p,
                false,
                vb.pp("visual_projection"),
            )?,
            text_projection: Linear::new(
                cfg.text_config.hidden_size,
                p,
                false,
                vb.pp("text_projection"),
            )?,
            logit_scale: vb.get_with_hints((), "logit_scale", scale)?,
            cfg: cfg.clone(),
        })
    }

    /// Loads a model folder (`config.json`, `model.safetensors`); the report lists every
    /// missing, unexpected or mismatched tensor, and any of them is an error.
    pub fn load(dir: &Path, device: &Device) -> Result<(Self, LoadReport)> {
        let cfg = ClipConfig::from_json_file(&dir.join("config.json"))?;
        let weights = dir.join("model.safetensors");
        let ckpt = Checkpoint::open(&weights)?;
        let (vb, tracker) = ckpt.var_builder(DType::F32, device);
        let model = Self::new(&cfg, vb)?;
        let mut report = tracker.report();
        // Old checkpoints persist `position_ids` buffers (an arange), not weights.
        report.unexpected.retain(|n| !n.ends_with("position_ids"));
        Ok((model, report.into_result(&weights)?))
    }

    /// The configuration.
    pub fn config(&self) -> &ClipConfig {
        &self.cfg
    }

    /// `exp(logit_scale)`: the factor of the cosine similarities in the logits.
    pub fn logit_scale(&self) -> Result<f64> {
        Ok(f64::from(self.logit_scale.exp()?.flatten_all()?.to_vec1::<f32>()?[0]))
    }

    /// The vision tower.
    pub fn vision(&self) -> &Vit {
        &self.vision
    }

    /// The text tower.
    pub fn text(&self) -> &ClipText {
        &self.text
    }

    /// pixels: [batch, 3, H, W] -> [batch, projection_dim] (not normalised)
    pub fn image_features(&self, pixels: &Tensor) -> Result<Tensor> {
        Ok(self.visual_projection.forward(&self.vision.forward(pixels)?.pooled)?)
    }

    /// ids: [batch, seq] (u32); mask: [batch, seq] -> [batch, projection_dim] (not normalised)
    pub fn text_features(&self, ids: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let hidden = self.text.forward(ids, mask)?;
        Ok(self.text_projection.forward(&self.text.pool(&hidden, ids)?)?)
    }

    /// Scaled cosine similarities `exp(logit_scale) * norm(img) norm(txt)^T`.
    ///
    /// image_features: [n_img, P]; text_features: [n_txt, P] -> [n_img, n_txt]
    pub fn logits_per_image(
        &self,
        image_features: &Tensor,
        text_features: &Tensor,
    ) -> Result<Tensor> {
        let img = l2_normalize(image_features)?;
        let txt = l2_normalize(text_features)?;
        Ok(img.matmul(&txt.t()?)?.broadcast_mul(&self.logit_scale.exp()?)?)
    }
}

/// x: [n, d] -> rows scaled to unit L2 norm
pub fn l2_normalize(x: &Tensor) -> Result<Tensor> {
    Ok(x.broadcast_div(&x.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?)?)
}

#[cfg(test)]
mod tests;
