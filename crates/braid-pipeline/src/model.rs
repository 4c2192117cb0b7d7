//! [`MultimodalModel`]: whatever a `--model` path holds that takes media (a Hugging Face
//! LLaVA folder, images only, or a Braid model directory), behind one call that turns a
//! tokenized prompt and its inputs into embeddings for `LanguageModel::forward_embeds`.
//! This is what `braid chat --image/--audio/--imu` calls.

use std::path::Path;

use braid_core::{Error, Modality, Result};
use braid_llm::Llama;
use candle_core::{DType, Device, Tensor};

use crate::{Input, Llava, Pipeline, PIPELINE_FILE};

/// A model that reads images (and, for pipelines, other modalities) and writes text.
#[derive(Debug)]
pub enum MultimodalModel {
    /// A Hugging Face `LlavaForConditionalGeneration` folder.
    Llava(Box<Llava>),
    /// A Braid model directory (`pipeline.toml`).
    Pipeline(Box<Pipeline>),
}

impl MultimodalModel {
    /// Opens `dir`: a Braid model directory when it holds `pipeline.toml`, a LLaVA folder
    /// when its `config.json` says `"model_type": "llava"`.
    pub fn open(dir: &Path, device: &Device) -> Result<Self> {
        if dir.join(PIPELINE_FILE).is_file() {
            return Ok(Self::Pipeline(Box::new(Pipeline::open(
                dir,
                braid_llm::Weights::Frozen { dequantize: false },
                device,
            )?)));
        }
        let config = dir.join("config.json");
        let text = std::fs::read_to_string(&config).map_err(|e| Error::io(&config, e))?;
        let json: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| Error::format(&config, e.to_string()))?;
        match json.get("model_type").and_then(|v| v.as_str()) {
            Some("llava") => Ok(Self::Llava(Box::new(Llava::load(dir, DType::F32, device)?.0))),
            other => Err(Error::format(
                dir,
                format!("neither {PIPELINE_FILE} nor a LLaVA config.json (model_type {other:?})"),
            )),
        }
    }

    /// The id of `<image>` in the prompt, if the model reads images.
    pub fn image_token_id(&self) -> Option<u32> {
        match self {
            Self::Llava(m) => Some(m.config().image_token_index),
            Self::Pipeline(p) => {
                p.prompter().ok().and_then(|pr| pr.placeholder_id(Modality::Image))
            }
        }
    }

    /// The language model, for decoding with a cache after [`Self::embed_prompt`].
    pub fn llm(&self) -> Result<&Llama> {
        match self {
            Self::Llava(m) => Ok(m.language_model()),
            Self::Pipeline(p) => p.llm(),
        }
    }

    /// One prompt with one placeholder id per item (as tokenized from text) and its
    /// inputs, spliced into embeddings. A LLaVA model reads images only.
    ///
    /// ids: t ids; inputs: each batch 1 (images [1, 3, H, W]) -> [1, t', d_llm]
    pub fn embed_prompt(&self, ids: &[u32], inputs: &[Input]) -> Result<Tensor> {
        match self {
            Self::Llava(m) => {
                if let Some(x) = inputs.iter().find(|x| x.modality != Modality::Image) {
                    return Err(Error::Invalid(format!(
                        "a LLaVA model reads images only, not {}",
                        x.modality
                    )));
                }
                let token = m.config().image_token_index;
                let per = m.config().tokens_per_image();
                let expanded: Vec<u32> = ids
                    .iter()
                    .flat_map(|&id| std::iter::repeat_n(id, if id == token { per } else { 1 }))
                    .collect();
                let ids = Tensor::new(expanded.as_slice(), m.device())?.unsqueeze(0)?;
                let images: Vec<&Tensor> = inputs.iter().map(|x| &x.data).collect();
                let pixels = if images.is_empty() { None } else { Some(Tensor::cat(&images, 0)?) };
                m.input_embeds(&ids, pixels.as_ref())
            }
            Self::Pipeline(p) => p.embed_prompt(ids, inputs),
        }
    }
}
