//! The chat model a server runs: a language model alone (GGUF or a Hugging Face folder,
//! with its own chat template), or a Braid model directory (`pipeline.toml`: encoders
//! and projectors in front of the language model, whose prompter places the media).

use std::path::Path;

use braid_core::{Error, Modality, Result};
use braid_llm::{ChatTemplate, Llama, Message, TextModel, Tokenizer, Weights};
use braid_pipeline::{place_media, Input, Pipeline, PIPELINE_FILE};
use candle_core::{Device, Tensor};

/// A language model alone, or a multimodal Braid model directory.
pub enum ChatModel {
    /// Text in, text out.
    Text {
        /// The model and tokenizer.
        model: Box<TextModel>,
        /// Its chat template, compiled once.
        template: Box<ChatTemplate>,
    },
    /// Encoders and projectors in front of a language model.
    Pipeline(Box<Pipeline>),
}

impl ChatModel {
    /// Opens `path`: a Braid model directory when it holds `pipeline.toml`, else a GGUF
    /// file or Hugging Face folder; weights frozen (quantized ones kept quantized).
    pub fn open(path: &Path, device: &Device) -> Result<Self> {
        let weights = Weights::Frozen { dequantize: false };
        if path.join(PIPELINE_FILE).is_file() {
            return Ok(Self::Pipeline(Box::new(Pipeline::open(path, weights, device)?)));
        }
        Self::text(TextModel::load(path, weights, device)?)
    }

    /// A language model alone.
    pub fn text(model: TextModel) -> Result<Self> {
        let template = model.chat_template()?;
        Ok(Self::Text { model: Box::new(model), template: Box::new(template) })
    }

    /// The decoder.
    pub fn llm(&self) -> Result<&Llama> {
        match self {
            Self::Text { model, .. } => Ok(&model.model),
            Self::Pipeline(p) => p.llm(),
        }
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> Result<&Tokenizer> {
        match self {
            Self::Text { model, .. } => Ok(&model.tokenizer),
            Self::Pipeline(p) => Ok(p.prompter()?.tokenizer()),
        }
    }

    /// The modalities besides text that requests may carry.
    pub fn modalities(&self) -> Vec<Modality> {
        match self {
            Self::Text { .. } => Vec::new(),
            Self::Pipeline(p) => p.config().encoders.iter().map(|s| s.modality).collect(),
        }
    }

    /// Prompt ids of a conversation whose first user turn carries `media` (a placeholder
    /// each, unless the text places it), ending with the assistant's turn to speak.
    pub fn prompt_ids(&self, messages: &[Message], media: &[Modality]) -> Result<Vec<u32>> {
        match self {
            Self::Text { model, template } => {
                if let Some(m) = media.first() {
                    return Err(Error::Invalid(format!(
                        "this model reads text only: it has no {m} encoder"
                    )));
                }
                model.tokenizer.encode(&template.render(messages, true)?, false)
            }
            Self::Pipeline(p) => p.prompter()?.prompt_ids(&place_media(messages, media)),
        }
    }

    /// An uploaded input of `modality` (image or audio bytes), preprocessed as the model's slot says;
    /// `name` stands for it in errors.
    pub fn load_input(&self, modality: Modality, bytes: &[u8], name: &Path) -> Result<Input> {
        match self {
            Self::Text { .. } => Err(Error::Invalid(format!(
                "this model reads text only: it has no {modality} encoder"
            ))),
            Self::Pipeline(p) => p.load_input_bytes(modality, bytes, name),
        }
    }

    /// An IMU recording sent as rows (an upload), preprocessed as the model's IMU slot says.
    pub fn load_imu(&self, rows: &[Vec<f32>], rate_hz: Option<f64>, name: &Path) -> Result<Input> {
        match self {
            Self::Text { .. } => {
                Err(Error::Invalid("this model reads text only: it has no imu encoder".into()))
            }
            Self::Pipeline(p) => p.load_imu_rows(rows, rate_hz, name),
        }
    }

    /// The input embeddings of a prompt with its media spliced in.
    ///
    /// ids: prompt tokens; inputs: one per placeholder, in order -> [1, len, hidden]
    pub fn embed_prompt(&self, ids: &[u32], inputs: &[Input]) -> Result<Tensor> {
        match self {
            Self::Text { model, .. } => {
                use braid_llm::LanguageModel;
                let x = Tensor::new(ids, &Device::Cpu)?.unsqueeze(0)?;
                model.model.embed_tokens(&x)
            }
            Self::Pipeline(p) => p.embed_prompt(ids, inputs),
        }
    }
}
