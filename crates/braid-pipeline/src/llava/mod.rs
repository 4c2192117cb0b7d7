//! LLaVA-1.5 (Liu et al. 2023, "Improved Baselines with Visual Instruction Tuning") in the
//! Hugging Face layout: `vision_tower` (CLIP ViT, hidden state -2, class token dropped),
//! `multi_modal_projector` (`linear_1`, GELU, `linear_2`) and `language_model` (LLaMA).
//! `<image>` is expanded by the processor to one id per image token; those ids are
//! replaced by the projected image tokens in order.
//! References: transformers `models/llava/modeling_llava.py` (`LlavaModel.get_image_features`,
//! `get_placeholder_mask`); LLaVA `llava/model/llava_arch.py` (github.com/haotian-liu/LLaVA).

mod config;

use std::path::Path;

use braid_core::checkpoint::{Checkpoint, LoadReport};
use braid_core::{Error, Result};
use braid_encoders::image::Vit;
use braid_llm::{LanguageModel, Llama};
use braid_projectors::{MlpProjector, MlpProjectorConfig};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

pub use config::{llava_remap, LlavaConfig};

use crate::splice::{count_placeholders, splice};

/// `LlavaForConditionalGeneration`, modules named like its checkpoint tree.
#[derive(Debug, Clone)]
pub struct Llava {
    vision_tower: Vit,
    multi_modal_projector: MlpProjector,
    language_model: Llama,
    cfg: LlavaConfig,
    device: Device,
}

impl Llava {
    /// Builds under `vb` (`vision_tower.*`, `multi_modal_projector.*`,
    /// `language_model.{model,lm_head}.*`; see [`llava_remap`] for other layouts).
    pub fn new(cfg: &LlavaConfig, vb: VarBuilder) -> Result<Self> {
        cfg.validate()?;
        let vision_tower = Vit::new(&cfg.vision_config, vb.pp("vision_tower"))?
            .with_feature_layer(cfg.vision_feature_layer)?;
        let proj = MlpProjectorConfig {
            activation: cfg.projector_hidden_act,
            bias: cfg.multimodal_projector_bias,
        };
        let multi_modal_projector = MlpProjector::new(
            proj,
            cfg.vision_config.hidden_size,
            cfg.text_config.hidden_size,
            vb.pp("multi_modal_projector"),
        )?;
        let device = vb.device().clone();
        let language_model = Llama::new(&cfg.text_config, vb.pp("language_model"))?;
        Ok(Self { vision_tower, multi_modal_projector, language_model, cfg: cfg.clone(), device })
    }

    /// Loads `dir/config.json` and `dir/model.safetensors` (or a sharded
    /// `model.safetensors.index.json`) in any layout [`llava_remap`] knows; fails unless
    /// every tensor is used and fits.
    pub fn load(dir: &Path, dtype: DType, device: &Device) -> Result<(Self, LoadReport)> {
        let cfg = LlavaConfig::from_json_file(&dir.join("config.json"))?;
        let path = ["model.safetensors", "model.safetensors.index.json"]
            .into_iter()
            .map(|f| dir.join(f))
            .find(|p| p.is_file())
            .ok_or_else(|| {
                Error::format(dir, "no model.safetensors or model.safetensors.index.json")
            })?;
        let ckpt = Checkpoint::open(&path)?;
        let table = llava_remap(&ckpt.names());
        let ckpt = ckpt.with_remap(&table)?;
        let (vb, tracker) = ckpt.var_builder(dtype, device);
        let model = Self::new(&cfg, vb)?;
        let mut report = tracker.report();
        // Older llava-hf files persist CLIP's `position_ids` buffer (an arange), not a weight.
        report.unexpected.retain(|n| !n.ends_with("position_ids"));
        Ok((model, report.into_result(&path)?))
    }

    /// The configuration.
    pub fn config(&self) -> &LlavaConfig {
        &self.cfg
    }

    /// Where the weights live.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The language model (for decoding with a cache after [`Self::input_embeds`]).
    pub fn language_model(&self) -> &Llama {
        &self.language_model
    }

    /// Projected image tokens, as `LlavaModel.get_image_features`.
    ///
    /// pixels: [images, C, H, W] -> [images, tokens_per_image, d_llm]
    pub fn image_features(&self, pixels: &Tensor) -> Result<Tensor> {
        let hidden = self.vision_tower.hidden_state(pixels, self.cfg.vision_feature_layer)?;
        let n = hidden.dim(1)?;
        let selected = if self.cfg.drops_cls() { hidden.narrow(1, 1, n - 1)? } else { hidden };
        self.multi_modal_projector.forward(&selected)
    }

    /// Text embeddings with the image tokens spliced in at the `image_token_index` ids.
    /// Errors when the placeholders do not match the images, naming both counts.
    ///
    /// ids: [batch, seq] (u32); pixels: [images, C, H, W] -> [batch, seq, d_llm]
    pub fn input_embeds(&self, ids: &Tensor, pixels: Option<&Tensor>) -> Result<Tensor> {
        let rows: Vec<Vec<u32>> = ids.to_vec2()?;
        let token = self.cfg.image_token_index;
        let slots: usize = rows.iter().map(|r| count_placeholders(r, token)).sum();
        let images = pixels.map(|p| p.dim(0)).transpose()?.unwrap_or(0);
        let per = self.cfg.tokens_per_image();
        if slots != images * per {
            return Err(Error::Invalid(format!(
                "the prompt has {} image placeholders ({slots} `<image>` tokens, {per} per image) \
                 but {images} images were given",
                slots as f64 / per as f64
            )));
        }
        // Text ids only: placeholder ids may lie outside the vocabulary of a checkpoint.
        let text_ids: Vec<Vec<u32>> = rows
            .iter()
            .map(|r| r.iter().map(|&id| if id == token { 0 } else { id }).collect())
            .collect();
        let embeds = self.language_model.embed_tokens(&Tensor::new(text_ids, ids.device())?)?;
        match pixels {
            Some(px) if images > 0 => {
                let feats = self.image_features(px)?;
                let d = feats.dim(2)?;
                splice(
                    &embeds,
                    &rows,
                    token,
                    &feats.reshape((images * per, d))?.to_dtype(embeds.dtype())?,
                )
            }
            _ => Ok(embeds),
        }
    }

    /// ids: [batch, seq] (u32); pixels: [images, C, H, W] -> logits [batch, seq, vocab]
    pub fn forward(&self, ids: &Tensor, pixels: Option<&Tensor>) -> Result<Tensor> {
        let embeds = self.input_embeds(ids, pixels)?;
        Ok(self.language_model.forward_embeds(&embeds, None, None)?.logits)
    }
}
