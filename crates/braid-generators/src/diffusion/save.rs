//! Writing a pixel-space model as a diffusers folder (`model_index.json`, `unet/`,
//! `text_encoder/`, `tokenizer/`, `scheduler/`), and images as PNG.

use std::collections::HashMap;
use std::path::Path;

use braid_core::{Error, Result};
use braid_encoders::text::ClipTextConfig;
use candle_core::{DType, Tensor};
use serde_json::{json, Value};

use super::config::UNetConfig;

/// What a folder holds, beside the weights.
#[derive(Debug, Clone)]
pub struct FolderSpec<'a> {
    /// The UNet's configuration.
    pub unet: &'a UNetConfig,
    /// The text encoder's configuration.
    pub text: &'a ClipTextConfig,
    /// `tokenizer.json` text.
    pub tokenizer_json: &'a str,
    /// Tokens a prompt is padded to.
    pub max_tokens: usize,
    /// `scheduler_config.json`.
    pub scheduler: &'a Value,
}

fn write_json(path: &Path, v: &Value) -> Result<()> {
    let text = serde_json::to_string_pretty(v).map_err(|e| Error::Invalid(e.to_string()))?;
    std::fs::write(path, text).map_err(|e| Error::io(path, e))
}

fn mkdir(path: &Path) -> Result<()> {
    std::fs::create_dir_all(path).map_err(|e| Error::io(path, e))
}

/// Writes the folder into `dir` (existing or new): `weights` holds `unet.*` and
/// `text_encoder.*` tensors (the prefixes become the files; the text tower is written
/// under transformers' `text_model.*`).
pub fn save_pixel_folder(
    dir: &Path,
    spec: &FolderSpec,
    weights: &HashMap<String, Tensor>,
) -> Result<()> {
    for sub in ["unet", "text_encoder", "tokenizer", "scheduler"] {
        mkdir(&dir.join(sub))?;
    }
    write_json(
        &dir.join("model_index.json"),
        &json!({"_class_name": "StableDiffusionPipeline", "_braid": "pixel space: no autoencoder",
                "unet": ["diffusers", "UNet2DConditionModel"], "vae": [null, null],
                "text_encoder": ["transformers", "CLIPTextModel"],
                "tokenizer": ["transformers", "PreTrainedTokenizerFast"],
                "scheduler": ["diffusers", spec.scheduler["_class_name"].clone()],
                "safety_checker": [null, null], "feature_extractor": [null, null],
                "requires_safety_checker": false}),
    )?;
    write_json(&dir.join("unet/config.json"), &spec.unet.to_diffusers_json()?)?;
    let mut text = serde_json::to_value(spec.text).map_err(|e| Error::Invalid(e.to_string()))?;
    text["architectures"] = json!(["CLIPTextModel"]);
    text["model_type"] = json!("clip_text_model");
    write_json(&dir.join("text_encoder/config.json"), &text)?;
    let tok = dir.join("tokenizer/tokenizer.json");
    std::fs::write(&tok, spec.tokenizer_json).map_err(|e| Error::io(&tok, e))?;
    write_json(
        &dir.join("tokenizer/tokenizer_config.json"),
        &json!({"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": spec.max_tokens,
                "bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>",
                "pad_token": "<|endoftext|>", "unk_token": "<unk>"}),
    )?;
    write_json(&dir.join("scheduler/scheduler_config.json"), spec.scheduler)?;
    let part = |prefix: &str, rename: &str| -> Result<HashMap<String, Tensor>> {
        weights
            .iter()
            .filter_map(|(k, v)| k.strip_prefix(prefix).map(|rest| (format!("{rename}{rest}"), v)))
            .map(|(k, v)| Ok((k, v.to_dtype(DType::F32)?.contiguous()?)))
            .collect()
    };
    let unet = part("unet.", "")?;
    let text = part("text_encoder.", "text_model.")?;
    if unet.is_empty() || text.is_empty() {
        return Err(Error::Invalid("save: no unet.* or text_encoder.* weights".into()));
    }
    let p = dir.join("unet/diffusion_pytorch_model.safetensors");
    candle_core::safetensors::save(&unet, &p).map_err(|e| Error::format(&p, e.to_string()))?;
    let p = dir.join("text_encoder/model.safetensors");
    candle_core::safetensors::save(&text, &p).map_err(|e| Error::format(&p, e.to_string()))?;
    Ok(())
}

/// images `[n, 3, h, w]` in [0, 1] -> one PNG, `cols` images a row.
pub fn save_png_grid(images: &Tensor, cols: usize, path: &Path) -> Result<()> {
    let (n, c, h, w) = images.dims4()?;
    if c != 3 || n == 0 || cols == 0 {
        return Err(Error::shape("images [n, 3, h, w]", &[n, 3, h, w], images.dims()));
    }
    let rows = n.div_ceil(cols);
    let px = images.clamp(0f32, 1f32)?.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    let (gw, gh) = (cols * w, rows * h);
    let mut buf = vec![255u8; gw * gh * 3];
    for i in 0..n {
        let (ox, oy) = ((i % cols) * w, (i / cols) * h);
        for y in 0..h {
            for x in 0..w {
                for ch in 0..3 {
                    let v = px[((i * 3 + ch) * h + y) * w + x];
                    buf[((oy + y) * gw + ox + x) * 3 + ch] = (v * 255.0).round() as u8;
                }
            }
        }
    }
    let img = image::RgbImage::from_raw(gw as u32, gh as u32, buf)
        .ok_or_else(|| Error::Invalid("png grid: buffer size".into()))?;
    img.save(path).map_err(|e| Error::format(path, e.to_string()))
}
