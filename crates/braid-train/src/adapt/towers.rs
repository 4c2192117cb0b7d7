//! The aligned image and text towers an adapter classifies with: a Braid contrastive
//! model directory (`pipeline.toml` with `[contrastive]`: the trained ViT, its projection
//! and the frozen sentence-transformers text tower it was trained against) or a Hugging
//! Face CLIP folder (`config.json`, `model.safetensors`, `tokenizer.json`,
//! `preprocessor_config.json`). Both give unit-length features of one shared space.

use std::io::Read;
use std::path::{Path, PathBuf};

use braid_core::{Error, Result};
use braid_data::image::{load_rgb, resize_rgb, Filter, ImageProcessor};
use braid_data::text::TextTokenizer;
use braid_encoders::image::Clip;
use braid_encoders::text::SentenceEncoder;
use braid_pipeline::{CONTRASTIVE_FILE, PIPELINE_FILE};
use candle_core::{DType, Device, Tensor};
use sha2::{Digest, Sha256};

use crate::recipe::{VisionModel, VISION_ENCODER_FILE as ENCODER_FILE};
use crate::stages::l2_normalize as unit;

/// Images embedded per forward pass.
const BATCH: usize = 64;

/// One aligned pair of towers.
#[allow(clippy::large_enum_variant)]
pub enum Towers {
    /// A Braid contrastive model directory.
    Braid {
        /// The image tower with its projections.
        model: VisionModel,
        /// The frozen text tower.
        text: SentenceEncoder,
    },
    /// A Hugging Face CLIP folder.
    Clip {
        /// Both towers.
        clip: Clip,
        /// Its image preprocessing.
        proc: ImageProcessor,
        /// Its tokenizer.
        tok: TextTokenizer,
    },
}

impl std::fmt::Debug for Towers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Braid { .. } => "Towers::Braid",
            Self::Clip { .. } => "Towers::Clip",
        })
    }
}

impl Towers {
    /// Opens `dir`: a Braid contrastive model when it has `pipeline.toml`, else a CLIP folder.
    pub fn open(dir: &Path, dev: &Device) -> Result<Self> {
        if dir.join(PIPELINE_FILE).is_file() {
            let (model, _) = VisionModel::load(dir, dev)?;
            let text_dir =
                braid_hub::resolve_field(&model.file.contrastive.text, dir, "contrastive.text")?;
            let (text, _) = SentenceEncoder::load(&text_dir, None, dev)?;
            return Ok(Self::Braid { model, text });
        }
        if !dir.join("config.json").is_file() {
            return Err(Error::config(
                "model",
                format!(
                    "{} is neither a Braid contrastive model ({PIPELINE_FILE}) nor a CLIP folder \
                     (config.json)",
                    dir.display()
                ),
            ));
        }
        let (clip, report) = Clip::load(dir, dev)?;
        drop(report);
        let proc = ImageProcessor::from_json_file(&dir.join("preprocessor_config.json"))?;
        let max_len = clip.config().text_config.max_position_embeddings;
        let tok = TextTokenizer::from_file(&dir.join("tokenizer.json"), max_len)?;
        Ok(Self::Clip { clip, proc, tok })
    }

    /// The factor of cosine similarities in zero-shot logits, `exp(logit_scale)` (CLIP: 100).
    pub fn scale(&self) -> Result<f64> {
        match self {
            Self::Braid { model, .. } => Ok(model.file.contrastive.logit_scale.exp()),
            Self::Clip { clip, .. } => clip.logit_scale(),
        }
    }

    /// Width of the shared space.
    pub fn dim(&self) -> usize {
        match self {
            Self::Braid { model, .. } => model.file.contrastive.embed_dim,
            Self::Clip { clip, .. } => clip.config().projection_dim,
        }
    }

    /// Unit-length features of the images at `paths`, in order; `on_batch` is told how
    /// many were done after each batch. -> [n, dim]
    pub fn image_features(
        &self,
        paths: &[PathBuf],
        dev: &Device,
        on_batch: &mut dyn FnMut(usize),
    ) -> Result<Tensor> {
        let mut out = Vec::with_capacity(paths.len().div_ceil(BATCH));
        for chunk in paths.chunks(BATCH) {
            let pixels = chunk.iter().map(|p| self.pixels(p, dev)).collect::<Result<Vec<_>>>()?;
            let px = Tensor::stack(&pixels, 0)?;
            let f = match self {
                Self::Braid { model, .. } => model.image_embeds(&model.normalize(&px)?)?,
                Self::Clip { clip, .. } => clip.image_features(&px)?,
            };
            out.push(unit(&f)?);
            on_batch(chunk.len());
        }
        if out.is_empty() {
            return Ok(Tensor::zeros((0, self.dim()), DType::F32, dev)?);
        }
        Ok(Tensor::cat(&out, 0)?)
    }

    /// Unit-length features of `texts`. -> [n, dim]
    pub fn text_features(&self, texts: &[String], dev: &Device) -> Result<Tensor> {
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let f = match self {
            Self::Braid { model, text } => model.text_embeds(&text.embed(&refs, dev)?.0)?,
            Self::Clip { clip, tok, .. } => {
                let batch = tok.encode_batch(&refs, dev)?;
                clip.text_features(&batch.ids.to_dtype(DType::U32)?, Some(&batch.mask))?
            }
        };
        unit(&f)
    }

    /// Zero-shot class weights from prompts: each class's prompts (`template` with `{}`
    /// replaced by the class name) embedded, normalised, averaged and normalised again
    /// (CLIP's prompt ensembling, Tip-Adapter's `clip_classifier`). -> [classes, dim]
    pub fn class_weights(
        &self,
        classes: &[String],
        templates: &[String],
        dev: &Device,
    ) -> Result<Tensor> {
        if templates.is_empty() || templates.iter().any(|t| !t.contains("{}")) {
            return Err(Error::config(
                "templates",
                format!(
                    "each prompt template needs `{{}}` where the class name goes: {templates:?}"
                ),
            ));
        }
        let rows = classes
            .iter()
            .map(|c| {
                let name = c.replace('_', " ");
                let prompts: Vec<String> =
                    templates.iter().map(|t| t.replace("{}", &name)).collect();
                unit(&self.text_features(&prompts, dev)?.mean_keepdim(0)?)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Tensor::cat(&rows, 0)?)
    }

    /// One image as the image tower takes it: [3, H, W].
    fn pixels(&self, path: &Path, dev: &Device) -> Result<Tensor> {
        let img = load_rgb(path)?;
        match self {
            Self::Clip { proc, .. } => {
                proc.preprocess(&img, dev).map_err(|e| Error::format(path, e.to_string()))
            }
            Self::Braid { model, .. } => {
                let side = model.file.vit.image_size as u32;
                let img = if img.dimensions() == (side, side) {
                    img
                } else {
                    resize_rgb(&img, side, side, Filter::Bilinear)?
                };
                let (w, h) = img.dimensions();
                let data: Vec<f32> =
                    img.into_raw().into_iter().map(|v| f32::from(v) / 255.0).collect();
                Ok(Tensor::from_vec(data, (h as usize, w as usize, 3), dev)?
                    .permute((2, 0, 1))?
                    .contiguous()?)
            }
        }
    }
}

/// The SHA-256 of a model directory's weights and configuration: a cache records it, and
/// refuses to classify with a model whose fingerprint differs.
pub fn fingerprint(dir: &Path) -> Result<String> {
    let names: &[&str] = if dir.join(PIPELINE_FILE).is_file() {
        &[PIPELINE_FILE, ENCODER_FILE, CONTRASTIVE_FILE]
    } else {
        &["config.json", "model.safetensors"]
    };
    let mut hash = Sha256::new();
    for name in names {
        let path = dir.join(name);
        let mut file = std::fs::File::open(&path).map_err(|e| Error::io(&path, e))?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = file.read(&mut buf).map_err(|e| Error::io(&path, e))?;
            if n == 0 {
                break;
            }
            hash.update(&buf[..n]);
        }
    }
    Ok(hash.finalize().iter().map(|b| format!("{b:02x}")).collect())
}
