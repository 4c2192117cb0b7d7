//! `align` and `instruct` recipes for a multimodal LLM (LLaVA's two stages, Liu et al.
//! 2023, `llava/train/train.py`): `align` trains the input projector on captions,
//! `instruct` the projector and LoRA on conversations; the image encoder (from a
//! `contrastive` run, a fresh architecture, or the `init` model) and the language model
//! stay frozen unless asked. The data is a LLaVA conversation file (`.json` / `.jsonl`,
//! see `braid_data::conversation`) or the easy-VQA folder, which is written as one first.
//! A trained model is a pipeline directory that every command opens with
//! `braid_pipeline::Pipeline::open`.
//!
//! ```toml
//! stage = "instruct"
//! out_dir = "runs/llava-tiny"
//! [data]
//! path = "train.json"
//! [model]
//! llm = "smollm2"
//! placeholder = "<empty_output>"
//! init = "runs/llava-tiny-align/model"
//! [model.lora]
//! rank = 8
//! ```
//!
//! Slots of other modalities (OneLLM's progressive alignment adds audio, then IMU, to a
//! model that knows images) are `[[model.slots]]`, each with a fresh encoder:
//!
//! ```toml
//! [model]
//! init = "runs/onellm-image/model"    # its slots (encoder, preprocessing, projector) stay
//! [[model.slots]]
//! modality = "imu"
//! encoder = { type = "imu_patch", channels = 6, patch_size = 8, stride = 8 }
//! channels = ["acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z"]
//! train_encoder = true
//! ```

mod run;

use std::path::PathBuf;

use braid_core::{Error, Modality, Result};
use braid_data::conversation::ConversationOptions;
use braid_encoders::EncoderConfig;
use braid_pipeline::{LoraSettings, Preprocess};
use braid_projectors::ProjectorConfig;
use serde::{Deserialize, Serialize};

pub use run::{train_conversation, ConversationRun};

use crate::{Stage, TrainConfig};

/// An `align` or `instruct` recipe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConversationRecipe {
    /// Run directory; the trained model goes to `model/`.
    pub out_dir: PathBuf,
    /// The data.
    pub data: ConversationData,
    /// The model.
    pub model: ConversationModel,
    /// Optimisation.
    #[serde(default)]
    pub train: TrainConfig,
    /// `preference` (DPO) settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preference: Option<PreferenceSettings>,
}

/// `[preference]`: DPO's settings (Rafailov et al. 2023).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreferenceSettings {
    /// β: how far the policy may move from the reference (TRL's default 0.1).
    #[serde(default = "default_beta")]
    pub beta: f64,
}

impl Default for PreferenceSettings {
    fn default() -> Self {
        Self { beta: default_beta() }
    }
}

fn default_beta() -> f64 {
    0.1
}

/// Conversations to learn from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConversationData {
    /// A LLaVA conversation file (`.json`, `.jsonl`; media relative to it), or the
    /// easy-VQA folder (`answers.txt`, `train/`, `test/`; `easy-vqa` when fetched), which
    /// is written into the run directory as one (captions for `align`).
    pub path: PathBuf,
    /// Further conversation files mixed into the training data, read with the same
    /// options (e.g. a share of image captions while a new modality aligns, against
    /// forgetting).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mix: Vec<PathBuf>,
    /// A held-out conversation file whose last answers are scored (exact match) at each
    /// evaluation; for easy-VQA, `eval_images` test images instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_path: Option<PathBuf>,
    /// Held-out samples (or easy-VQA test images) scored at each evaluation (0: none).
    #[serde(default)]
    pub eval_images: usize,
    /// How the conversation file is read (skip, limit, turns per piece, weights, repeats).
    #[serde(default)]
    pub options: ConversationOptions,
    /// easy-VQA: skip this many training images first (a further stage on images not
    /// seen yet).
    #[serde(default)]
    pub skip_images: usize,
    /// easy-VQA: use only the first this many training images after those skipped (0: all).
    #[serde(default)]
    pub max_images: usize,
    /// easy-VQA `instruct`: questions per conversation. 0: all of an image's questions in
    /// one multi-turn conversation; 1: each question on its own, as the evaluation asks
    /// them; n: conversations of n turns.
    #[serde(default)]
    pub turns: usize,
    /// easy-VQA `instruct` with `turns = 1`: repeat each yes/no question about a colour or
    /// shape the image has this many times (0 or 1: once). Four in five yes/no questions
    /// name an attribute the image lacks, so a model that ignores the image and answers
    /// from the wording alone is right 83% of the time and training settles there;
    /// repeating the others removes that shortcut (written as each sample's `weight`).
    #[serde(default)]
    pub present_repeat: usize,
}

/// The pipeline to build.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConversationModel {
    /// The language model: a registered name (`smollm2`), a GGUF file or a Hugging Face
    /// folder.
    pub llm: String,
    /// The image placeholder: a special token of the language model's tokenizer, added to
    /// it when the vocabulary lacks it (default `<image>`; the easy-VQA recipes name
    /// SmolLM2's own `<empty_output>`).
    #[serde(default)]
    pub placeholder: Option<String>,
    /// The image encoder (`encoder.image.safetensors`) from a `contrastive` run's model
    /// directory or any model directory with a ViT image encoder (`models/easyvqa`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vision: Option<PathBuf>,
    /// A fresh image encoder of this architecture (images resized to its input and
    /// normalised by 0.5 / 0.5), when there is no `vision`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoder: Option<EncoderConfig>,
    /// Which of the vision model's tokens reach the projector.
    #[serde(default)]
    pub features: ImageFeatures,
    /// The input projector of every slot this recipe creates (the image slot from
    /// `vision` or `encoder`, and `slots` without their own; default: an MLP); slots from
    /// `init` keep theirs. A `upm` projector's experts are shared by every upm slot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub projector: Option<ProjectorConfig>,
    /// Slots of further modalities, each with a fresh encoder.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub slots: Vec<SlotSpec>,
    /// LoRA on the language model (the `instruct` stage trains it).
    #[serde(default)]
    pub lora: Option<LoraSettings>,
    /// Start from this model directory: its image encoder and preprocessing (unless
    /// `vision` or `encoder` is given), and every weight file it has (projector, LoRA,
    /// encoder), e.g. the `align` stage's model.
    #[serde(default)]
    pub init: Option<PathBuf>,
    /// Fine-tune every encoder of the model too (the image encoder, and the slots' from
    /// `init`; their weights are then part of the saved model).
    #[serde(default)]
    pub train_encoder: bool,
    /// The system turn of every conversation (`""`: a short empty one instead of the
    /// template's default prompt).
    #[serde(default)]
    pub system: String,
}

/// A modality slot with a fresh encoder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlotSpec {
    /// Whose placeholder (`<imu>`, `<audio>`, `<image>`) its tokens replace.
    pub modality: Modality,
    /// The encoder's architecture (OneLLM's modality tokenizers: `imu_patch`,
    /// `spectrogram_patch`).
    pub encoder: EncoderConfig,
    /// How a file becomes the encoder's input. Absent for an IMU slot: per-channel
    /// statistics of the training data's recordings, named by `channels`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preprocess: Option<Preprocess>,
    /// IMU channel names, in file order (for the statistics computed from the data).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub channels: Vec<String>,
    /// Its projector (absent: `model.projector`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub projector: Option<ProjectorConfig>,
    /// Its placeholder's text (absent: the generic `<imu>` / `<audio>`, added to the
    /// vocabulary when missing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placeholder: Option<String>,
    /// Train this encoder too (OneLLM trains a new modality's tokenizer with the
    /// projection module).
    #[serde(default)]
    pub train_encoder: bool,
}

/// The image tokens handed to the projector; unset fields keep the vision model's own
/// choice (its `pipeline.toml`: layer -2, patches without the class token).
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

impl ConversationRecipe {
    /// Checks before training: the stage, its components, the data options.
    pub fn validate(&self, stage: Stage) -> Result<()> {
        self.train.validate()?;
        self.data.options.validate()?;
        match stage {
            Stage::Align => {}
            Stage::Instruct if self.model.lora.is_none() => {
                return Err(Error::config(
                    "model.lora",
                    "stage `instruct` trains LoRA on the language model, which this model lacks",
                ))
            }
            Stage::Instruct if self.data.present_repeat > 1 && self.data.turns != 1 => {
                return Err(Error::config(
                    "data.present_repeat",
                    "repeats single questions: it needs `turns = 1`",
                ))
            }
            Stage::Instruct => {}
            Stage::Preference => {
                if self.model.lora.is_none() {
                    return Err(Error::config(
                        "model.lora",
                        "stage `preference` trains LoRA on the language model, which this model lacks",
                    ));
                }
                if self.model.init.is_none() {
                    return Err(Error::config(
                        "model.init",
                        "stage `preference` starts from a trained model (its reference): name its directory",
                    ));
                }
                let beta = self.preference.unwrap_or_default().beta;
                if !(beta.is_finite() && beta > 0.0) {
                    return Err(Error::config(
                        "preference.beta",
                        format!("must be positive, got {beta}"),
                    ));
                }
            }
            other => {
                return Err(Error::config(
                    "stage",
                    format!(
                        "{other:?} is not a multimodal-LLM stage (align, instruct, preference)"
                    ),
                ))
            }
        }
        let m = &self.model;
        if m.vision.is_none() && m.encoder.is_none() && m.init.is_none() && m.slots.is_empty() {
            return Err(Error::config("model.vision", "the model needs an encoder: `vision` (a contrastive run), `encoder` (a fresh image encoder), `init` (a model directory) or `slots`"));
        }
        for (i, slot) in m.slots.iter().enumerate() {
            let field = |f: &str| format!("model.slots[{i}].{f}");
            if m.slots[..i].iter().any(|s| s.modality == slot.modality) {
                return Err(Error::config(field("modality"), format!("`{}` twice", slot.modality)));
            }
            let image_too = m.vision.is_some() || m.encoder.is_some();
            if slot.modality == Modality::Image && image_too {
                return Err(Error::config(
                    field("modality"),
                    "the image slot is already given by `model.vision` / `model.encoder`",
                ));
            }
            if slot.preprocess.is_none()
                && slot.modality == Modality::Imu
                && slot.channels.is_empty()
            {
                return Err(Error::config(field("channels"), "an IMU slot without `preprocess` names its channels (its statistics come from the training data)"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::super::Recipe;
    use std::path::Path;

    #[test]
    fn instruct_without_lora_and_unknown_fields_name_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        let text = format!("stage = \"instruct\"\nout_dir = \"{d}/o\"\n[data]\npath = \"{d}\"\n[model]\nvision = \"{d}\"\nllm = \"smollm2\"\n");
        let r = Recipe::parse(&text, Path::new("r.toml")).unwrap();
        assert!(r.validate().unwrap_err().to_string().contains("model.lora"));
        let bad = format!("{text}lora_rank = 4\n");
        let e = Recipe::parse(&bad, Path::new("r.toml")).unwrap_err().to_string();
        assert!(e.contains("lora_rank"), "{e}");
        let no_encoder =
            text.replace("instruct", "align").replace(&format!("vision = \"{d}\"\n"), "");
        let e = Recipe::parse(&no_encoder, Path::new("r.toml"))
            .unwrap()
            .validate()
            .unwrap_err()
            .to_string();
        assert!(e.contains("model.vision"), "{e}");
    }
}
