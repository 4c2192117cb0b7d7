//! The trained vision model: the ViT, its projection into the shared space, the text
//! projection (when the shared space is not the text model's own). On disk it is a model
//! directory like every other: `pipeline.toml` with the image slot (the ViT, read out as
//! a multimodal pipeline takes it: layer -2, patches; its preprocessing) and the
//! `[contrastive]` settings, `encoder.image.safetensors`, `contrastive.safetensors`.

use std::path::Path;

use braid_core::checkpoint::Checkpoint;
use braid_core::{Error, Modality, Result};
use braid_encoders::image::{Vit, VitConfig};
use braid_encoders::EncoderConfig;
use braid_nn::Linear;
use braid_pipeline::{
    ContrastiveConfig, EncoderSlot, ImagePreprocess, PipelineConfig, Preprocess, CONTRASTIVE_FILE,
    PIPELINE_FILE,
};
use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{VarBuilder, VarMap};

/// The ViT's weights.
pub const ENCODER_FILE: &str = "encoder.image.safetensors";

/// Per-channel mean and std applied to pixels in [0, 1]: maps them to [-1, 1].
pub const IMAGE_MEAN: [f32; 3] = [0.5; 3];
/// See [`IMAGE_MEAN`].
pub const IMAGE_STD: [f32; 3] = [0.5; 3];

/// Everything needed to use the encoder beside its weights.
#[derive(Debug, Clone, PartialEq)]
pub struct VisionModelFile {
    /// The ViT.
    pub vit: VitConfig,
    /// Per-channel mean subtracted from RGB in [0, 1].
    pub image_mean: [f32; 3],
    /// Per-channel std the centred pixels are divided by.
    pub image_std: [f32; 3],
    /// The shared space and the text tower.
    pub contrastive: ContrastiveConfig,
}

impl VisionModelFile {
    /// The model directory's `pipeline.toml`: an encoder-only pipeline whose image slot
    /// reads layer -2 without the class token (LLaVA's choice: the last layer's patch
    /// outputs get no contrastive gradient, only its class token does).
    pub fn pipeline_config(&self) -> PipelineConfig {
        let size = self.vit.image_size as u32;
        let widen = |v: [f32; 3]| v.map(f64::from);
        let slot = EncoderSlot {
            modality: Modality::Image,
            model: None,
            placeholder: None,
            token_id: None,
            encoder: Some(EncoderConfig::Vit {
                vit: self.vit.clone(),
                feature_layer: -2,
                drop_cls: true,
                pool: 1,
            }),
            preprocess: Some(Preprocess::Image(ImagePreprocess::fixed(
                size,
                size,
                widen(self.image_mean),
                widen(self.image_std),
            ))),
            projector: None,
        };
        PipelineConfig {
            encoders: vec![slot],
            contrastive: Some(self.contrastive.clone()),
            ..Default::default()
        }
    }

    /// Reads `dir/pipeline.toml` of a contrastive run's model.
    pub fn read(dir: &Path) -> Result<Self> {
        let path = dir.join(PIPELINE_FILE);
        let cfg = PipelineConfig::load(&path)?;
        let bad =
            |what: &str| Error::format(&path, format!("not a contrastive image model: {what}"));
        let contrastive = cfg.contrastive.clone().ok_or_else(|| bad("no [contrastive]"))?;
        let slot = cfg.slot(Modality::Image).ok_or_else(|| bad("no image encoder"))?;
        let (Some(EncoderConfig::Vit { vit, .. }), Some(Preprocess::Image(p))) =
            (&slot.encoder, &slot.preprocess)
        else {
            return Err(bad("the image slot needs a ViT and its image preprocessing"));
        };
        let narrow = |v: [f64; 3]| v.map(|x| x as f32);
        Ok(Self {
            vit: vit.clone(),
            image_mean: narrow(p.image_mean),
            image_std: narrow(p.image_std),
            contrastive,
        })
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
        let c = &file.contrastive;
        let visual =
            Linear::new(file.vit.hidden_size, c.embed_dim, false, head.pp("visual_projection"))?;
        let text = c
            .text_projection
            .then(|| Linear::new(c.text_dim, c.embed_dim, false, head.pp("text_projection")))
            .transpose()?;
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

    /// Writes `pipeline.toml` and the two weight files into `dir` (which must exist).
    pub fn save(file: &VisionModelFile, dir: &Path, encoder: &VarMap, head: &VarMap) -> Result<()> {
        let path = dir.join(PIPELINE_FILE);
        std::fs::write(&path, file.pipeline_config().to_toml()?)
            .map_err(|e| Error::io(&path, e))?;
        encoder.save(dir.join(ENCODER_FILE))?;
        head.save(dir.join(CONTRASTIVE_FILE))?;
        Ok(())
    }

    /// Loads a model directory; every stored tensor must be used. -> (model, parameters)
    pub fn load(dir: &Path, device: &Device) -> Result<(Self, usize)> {
        let file = VisionModelFile::read(dir)?;
        let (enc, head) = (
            Checkpoint::open(dir.join(ENCODER_FILE))?,
            Checkpoint::open(dir.join(CONTRASTIVE_FILE))?,
        );
        let params = [&enc, &head]
            .iter()
            .flat_map(|c| {
                c.names()
                    .into_iter()
                    .map(move |n| c.shape(&n).map_or(0, |s| s.iter().product::<usize>()))
            })
            .sum::<usize>();
        let ((evb, et), (hvb, ht)) =
            (enc.var_builder(DType::F32, device), head.var_builder(DType::F32, device));
        let model = Self::new(file, evb, hvb)?;
        et.report().into_result(dir.join(ENCODER_FILE))?;
        ht.report().into_result(dir.join(CONTRASTIVE_FILE))?;
        Ok((model, params + 1))
    }
}

/// x: [.., 3, H, W] -> (x - mean) / std per channel
pub fn normalize(pixels: &Tensor, mean: &[f32; 3], std: &[f32; 3]) -> Result<Tensor> {
    let shape = |v: &[f32; 3]| -> Result<Tensor> {
        let mut dims = vec![1usize; pixels.rank()];
        let c = pixels
            .rank()
            .checked_sub(3)
            .ok_or_else(|| Error::shape("pixels [.., 3, H, W]", &[3, 0, 0], pixels.dims()))?;
        dims[c] = 3;
        Ok(Tensor::new(v, pixels.device())?.reshape(dims)?)
    };
    Ok(pixels.broadcast_sub(&shape(mean)?)?.broadcast_div(&shape(std)?)?)
}
