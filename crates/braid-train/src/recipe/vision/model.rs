//! The trained vision model: the ViT, its projection into the shared space, the text
//! projection (when the shared space is not the text model's own), and `vision.json`,
//! which tells a multimodal pipeline how to feed images and which tokens to take.

use std::path::Path;

use braid_core::checkpoint::Checkpoint;
use braid_core::{Error, Result};
use braid_encoders::image::{Vit, VitConfig};
use braid_nn::Linear;
use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{VarBuilder, VarMap};
use serde::{Deserialize, Serialize};

/// `vision.json` file name.
pub const CONFIG_FILE: &str = "vision.json";
/// The ViT's weights.
pub const ENCODER_FILE: &str = "encoder.safetensors";
/// The projection heads.
pub const HEAD_FILE: &str = "head.safetensors";

/// Per-channel mean and std applied to pixels in [0, 1]: maps them to [-1, 1].
pub const IMAGE_MEAN: [f32; 3] = [0.5; 3];
/// See [`IMAGE_MEAN`].
pub const IMAGE_STD: [f32; 3] = [0.5; 3];

/// `vision.json`: everything needed to use the encoder beside its weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VisionModelFile {
    /// The ViT.
    pub vit: VitConfig,
    /// Per-channel mean subtracted from RGB in [0, 1].
    pub image_mean: [f32; 3],
    /// Per-channel std the centred pixels are divided by.
    pub image_std: [f32; 3],
    /// The frozen text tower it was trained against (its folder, as training was given it).
    pub text: String,
    /// The text tower's embedding width.
    pub text_dim: usize,
    /// Width of the shared space (`text_dim` when there is no text projection).
    pub embed_dim: usize,
    /// Whether `head.safetensors` holds `text_projection.weight`.
    pub text_projection: bool,
    /// The trained `ln(1/τ)`.
    pub logit_scale: f64,
    /// For a multimodal LLM: which `hidden_states` index to read (LLaVA's -2; the last
    /// layer's patch outputs get no contrastive gradient, only its class token does).
    pub feature_layer: isize,
    /// For a multimodal LLM: which tokens of that layer (`patch`: all but the class token,
    /// LLaVA's `mm_vision_select_feature`).
    pub select: String,
}

impl VisionModelFile {
    /// Reads `dir/vision.json`.
    pub fn read(dir: &Path) -> Result<Self> {
        let path = dir.join(CONFIG_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        serde_json::from_str(&text).map_err(|e| Error::format(&path, e.to_string()))
    }

    /// RGB in [0, 1] [.., 3, H, W] -> what the ViT takes.
    pub fn normalize(&self, pixels: &Tensor) -> Result<Tensor> {
        normalize(pixels, &self.image_mean, &self.image_std)
    }
}

/// The image tower with its heads.
#[derive(Debug, Clone)]
pub struct VisionModel {
    /// The ViT.
    pub vit: Vit,
    visual: Linear,
    text: Option<Linear>,
    /// Its description.
    pub file: VisionModelFile,
}

impl VisionModel {
    /// Builds the ViT from `enc` (at its root) and the heads from `head`.
    pub fn new(file: VisionModelFile, enc: VarBuilder, head: VarBuilder) -> Result<Self> {
        let vit = Vit::new(&file.vit, enc)?;
        let visual = Linear::new(file.vit.hidden_size, file.embed_dim, false, head.pp("visual_projection"))?;
        let text = file.text_projection.then(|| Linear::new(file.text_dim, file.embed_dim, false, head.pp("text_projection"))).transpose()?;
        Ok(Self { vit, visual, text, file })
    }

    /// Normalised pixels [batch, 3, H, W] -> image embeddings [batch, embed_dim]
    /// (the projected, post-norm class token; not unit length).
    pub fn image_embeds(&self, pixels: &Tensor) -> Result<Tensor> {
        Ok(self.visual.forward(&self.vit.forward(pixels)?.pooled)?)
    }

    /// Text-tower embeddings [n, text_dim] -> [n, embed_dim].
    pub fn text_embeds(&self, text: &Tensor) -> Result<Tensor> {
        match &self.text {
            Some(p) => Ok(p.forward(text)?),
            None => Ok(text.clone()),
        }
    }

    /// RGB in [0, 1] [.., 3, H, W] -> what the ViT takes.
    pub fn normalize(&self, pixels: &Tensor) -> Result<Tensor> {
        self.file.normalize(pixels)
    }

    /// Writes `vision.json` and the two weight files into `dir` (which must exist).
    pub fn save(file: &VisionModelFile, dir: &Path, encoder: &VarMap, head: &VarMap) -> Result<()> {
        let path = dir.join(CONFIG_FILE);
        let json = serde_json::to_string_pretty(file).map_err(|e| Error::format(&path, e.to_string()))?;
        std::fs::write(&path, json).map_err(|e| Error::io(&path, e))?;
        encoder.save(dir.join(ENCODER_FILE))?;
        head.save(dir.join(HEAD_FILE))?;
        Ok(())
    }

    /// Loads a model directory; every stored tensor must be used. -> (model, parameters)
    pub fn load(dir: &Path, device: &Device) -> Result<(Self, usize)> {
        let file = VisionModelFile::read(dir)?;
        let (enc, head) = (Checkpoint::open(dir.join(ENCODER_FILE))?, Checkpoint::open(dir.join(HEAD_FILE))?);
        let params = [&enc, &head].iter().flat_map(|c| c.names().into_iter().map(move |n| c.shape(&n).map_or(0, |s| s.iter().product::<usize>()))).sum::<usize>();
        let ((evb, et), (hvb, ht)) = (enc.var_builder(DType::F32, device), head.var_builder(DType::F32, device));
        let model = Self::new(file, evb, hvb)?;
        et.report().into_result(dir.join(ENCODER_FILE))?;
        ht.report().into_result(dir.join(HEAD_FILE))?;
        Ok((model, params + 1))
    }
}

/// x: [.., 3, H, W] -> (x - mean) / std per channel
pub fn normalize(pixels: &Tensor, mean: &[f32; 3], std: &[f32; 3]) -> Result<Tensor> {
    let shape = |v: &[f32; 3]| -> Result<Tensor> {
        let mut dims = vec![1usize; pixels.rank()];
        let c = pixels.rank().checked_sub(3).ok_or_else(|| Error::shape("pixels [.., 3, H, W]", &[3, 0, 0], pixels.dims()))?;
        dims[c] = 3;
        Ok(Tensor::new(v, pixels.device())?.reshape(dims)?)
    };
    Ok(pixels.broadcast_sub(&shape(mean)?)?.broadcast_div(&shape(std)?)?)
}
