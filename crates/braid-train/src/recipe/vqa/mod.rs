//! Recipes for a multimodal LLM on easy-VQA (LLaVA's two stages, Liu et al. 2023,
//! `llava/train/train.py`): `align` trains the input projector on captions, `instruct`
//! the projector and LoRA on multi-turn question answering; the vision encoder (from a
//! `contrastive` run) and SmolLM2 stay frozen. A trained model is a pipeline directory
//! (`pipeline.toml`, `encoder.image.safetensors`, `projector.image.safetensors`,
//! `lora.safetensors`) that every command opens with `braid_pipeline::Pipeline::open`.

mod run;

use std::path::{Path, PathBuf};

use braid_core::{Error, Result};
use braid_pipeline::LoraSettings;
use braid_projectors::ProjectorConfig;
use serde::{Deserialize, Serialize};

pub use run::{train_vqa, VqaRun, CAPTION_PROMPT};

use crate::{Stage, TrainConfig};

/// An `align` or `instruct` recipe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VqaRecipe {
    /// `align` or `instruct`.
    pub stage: Stage,
    /// Run directory; the trained model goes to `model/`.
    pub out_dir: PathBuf,
    /// The data.
    pub data: VqaData,
    /// The model.
    pub model: VqaModel,
    /// Optimisation.
    #[serde(default)]
    pub train: TrainConfig,
}

/// easy-VQA and how much of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VqaData {
    /// The easy-VQA directory (`answers.txt`, `train/`, `test/`); `easy-vqa` when fetched.
    pub path: PathBuf,
    /// Skip this many training images first (a further stage on images not seen yet).
    #[serde(default)]
    pub skip_images: usize,
    /// Use only the first this many training images after those skipped (0: all).
    #[serde(default)]
    pub max_images: usize,
    /// Test images scored at each evaluation during training (0: none).
    #[serde(default)]
    pub eval_images: usize,
    /// `instruct`: questions per conversation. 0: all of an image's questions in one
    /// multi-turn conversation; 1: each question on its own, as the evaluation asks them
    /// (later turns of a conversation can read earlier answers instead of the image);
    /// n: the image's questions in conversations of n turns.
    #[serde(default)]
    pub turns: usize,
    /// `instruct` with `turns = 1`: repeat each yes/no question about a colour or shape the
    /// image has this many times (0 or 1: once). Four in five yes/no questions name an
    /// attribute the image lacks, so a model that ignores the image and answers from the
    /// wording alone ("is there a X?" -> no, "is there not a X?" -> yes) is right 83% of
    /// the time and training settles there; repeating the others removes that shortcut.
    #[serde(default)]
    pub present_repeat: usize,
}

/// The pipeline to build.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VqaModel {
    /// The vision model directory a `contrastive` run wrote (`vision.json`, ...).
    pub vision: PathBuf,
    /// The language model: a registered name (`smollm2`) or a path.
    pub llm: String,
    /// The image placeholder: a special token of the language model's tokenizer
    /// (default `<image>`; SmolLM2 has none, and its recipes name `<empty_output>`).
    #[serde(default)]
    pub placeholder: Option<String>,
    /// Which of the vision model's tokens reach the projector.
    #[serde(default)]
    pub features: ImageFeatures,
    /// The input projector.
    #[serde(default)]
    pub projector: ProjectorConfig,
    /// LoRA on the language model (the `instruct` stage trains it).
    #[serde(default)]
    pub lora: Option<LoraSettings>,
    /// Start from this model directory's projector (and LoRA, and encoder), e.g. the
    /// `align` stage's.
    #[serde(default)]
    pub init: Option<PathBuf>,
    /// Fine-tune the image encoder too (its weights are then part of the saved model).
    #[serde(default)]
    pub train_encoder: bool,
    /// The system turn of every conversation (`""`: a short empty one instead of the
    /// template's default prompt).
    #[serde(default)]
    pub system: String,
}

/// The image tokens handed to the projector; unset fields keep the vision model's own
/// choice (`vision.json`: `feature_layer`, `select`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageFeatures {
    /// Hidden state read out (Python indexing: -1 the last, -2 LLaVA's).
    #[serde(default)]
    pub layer: Option<isize>,
    /// Keep the class token in front of the patches.
    #[serde(default)]
    pub cls: Option<bool>,
    /// Average the patch grid over `pool` x `pool` windows (0 or 1: every patch).
    #[serde(default)]
    pub pool: usize,
}

impl VqaRecipe {
    /// Reads a recipe; unknown fields are errors naming the field.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        toml::from_str(&text).map_err(|e| Error::format(path, e.to_string().trim().replace('\n', " ")))
    }

    /// The recipe as TOML.
    pub fn to_toml(&self) -> Result<String> {
        toml::to_string_pretty(self).map_err(|e| Error::Invalid(format!("recipe to TOML: {e}")))
    }

    /// Checks before training: the stage, its components, the paths.
    pub fn validate(&self) -> Result<()> {
        self.train.validate()?;
        match self.stage {
            Stage::Align => {}
            Stage::Instruct if self.model.lora.is_none() => {
                return Err(Error::config("model.lora", "stage `instruct` trains LoRA on the language model, which this model lacks"))
            }
            Stage::Instruct if self.data.present_repeat > 1 && self.data.turns != 1 => {
                return Err(Error::config("data.present_repeat", "repeats single questions: it needs `turns = 1`"))
            }
            Stage::Instruct => {}
            other => return Err(Error::config("stage", format!("{other:?} is not a multimodal-LLM stage (align, instruct)"))),
        }
        for (field, p) in [("data.path", Some(&self.data.path)), ("model.vision", Some(&self.model.vision)), ("model.init", self.model.init.as_ref())] {
            if let Some(p) = p.filter(|p| !p.exists()) {
                return Err(Error::config(field, format!("{} does not exist", p.display())));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn instruct_without_lora_and_unknown_fields_name_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        let text = format!("stage = \"instruct\"\nout_dir = \"{d}/o\"\n[data]\npath = \"{d}\"\n[model]\nvision = \"{d}\"\nllm = \"smollm2\"\n");
        let r: VqaRecipe = toml::from_str(&text).unwrap();
        assert!(r.validate().unwrap_err().to_string().contains("model.lora"));
        let bad = format!("{text}lora_rank = 4\n");
        let e = toml::from_str::<VqaRecipe>(&bad).unwrap_err().to_string();
        assert!(e.contains("lora_rank"), "{e}");
        let missing: VqaRecipe = toml::from_str(&text.replace("instruct", "align").replace(&format!("vision = \"{d}\""), "vision = \"/no/such/dir\"")).unwrap();
        assert!(missing.validate().unwrap_err().to_string().contains("model.vision"));
    }
}
