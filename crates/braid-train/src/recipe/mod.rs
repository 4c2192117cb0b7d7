//! Recipes: one TOML file describes a run end to end (stage, data, model, optimisation),
//! in the manner of the LLaVA training scripts' arguments but typed. Every table rejects
//! unknown fields, and [`Recipe::validate`] checks the data paths and that the model has
//! every component the stage trains, so a bad recipe fails before any training, naming
//! the field.
//!
//! ```toml
//! stage = "classify"
//! out_dir = "runs/hapt-cnn"
//! [data]            # see `ImuData`
//! path = "hapt"
//! [model.encoder]   # see `braid_encoders::EncoderConfig`
//! type = "cnn"
//! [model.head]
//! [train]           # see `TrainConfig`
//! epochs = 30
//! ```

mod imu;
mod run;
mod vision;
mod vqa;

use std::path::{Path, PathBuf};

use braid_core::{Error, Result};
use braid_encoders::EncoderConfig;
use serde::{Deserialize, Serialize};

pub use imu::{ImuData, ImuSplit, SubjectSet};
pub use run::{evaluate_classifier, imu_stats, train_classifier, ClassifyReport};
pub use vqa::{train_vqa, VqaData, VqaModel, VqaRecipe, VqaRun, CAPTION_PROMPT};
pub use vision::{evaluate_vision, train_vision, VisionData, VisionModel, VisionModelFile, VisionModelSpec, VisionRecipe, VisionReport};

use crate::classify::Augment;
use crate::{Component, Stage, TrainConfig};

/// A training run, as written in `recipes/<dataset>/<stage>.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    /// Which components train (see [`Stage`]).
    pub stage: Stage,
    /// Run directory (checkpoints, metrics, plots; the trained model in `model/`).
    pub out_dir: PathBuf,
    /// The data.
    pub data: ImuData,
    /// The model's components.
    pub model: ModelSpec,
    /// Optimisation.
    #[serde(default)]
    pub train: TrainConfig,
    /// Training-time augmentation.
    #[serde(default)]
    pub augment: Augment,
}

/// The components of the model a recipe trains.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// The modality encoder.
    pub encoder: Option<EncoderConfig>,
    /// A linear classification head over the mean-pooled encoder tokens.
    pub head: Option<HeadSpec>,
    /// Keep the encoder frozen (a linear probe): only the head trains.
    #[serde(default)]
    pub freeze_encoder: bool,
}

/// Classification head settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeadSpec {}

impl ModelSpec {
    /// The components this model has.
    pub fn components(&self) -> Vec<Component> {
        let mut c = Vec::new();
        if self.encoder.is_some() {
            c.push(Component::Encoder);
        }
        if self.head.is_some() {
            c.push(Component::Head);
        }
        c
    }
}

impl Recipe {
    /// Reads a recipe; unknown or mistyped fields are errors naming the field and line.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::parse(&text, path)
    }

    /// Parses recipe text (`path` is for messages).
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        toml::from_str(text).map_err(|e| Error::format(path, e.to_string().trim().replace('\n', " ")))
    }

    /// The recipe as TOML (saved beside every checkpoint).
    pub fn to_toml(&self) -> Result<String> {
        toml::to_string_pretty(self).map_err(|e| Error::Invalid(format!("recipe to TOML: {e}")))
    }

    /// Checks what can be checked before training: the optimisation settings, the data
    /// path, and that the model has every component the stage trains.
    pub fn validate(&self) -> Result<()> {
        self.train.validate()?;
        let have = self.model.components();
        for need in self.stage.trainable() {
            if !have.contains(need) {
                let field = format!("model.{}", component_field(*need));
                return Err(Error::config(field, format!("stage `{}` trains the {need:?} component, which this model lacks", stage_name(self.stage))));
            }
        }
        if self.stage != Stage::Classify {
            return Err(Error::config("stage", format!("`{}` recipes run through the multimodal pipeline (recipes/easyvqa); this recipe format is for `classify`", stage_name(self.stage))));
        }
        self.data.validate()
    }
}

fn component_field(c: Component) -> &'static str {
    match c {
        Component::Encoder => "encoder",
        Component::InputProjector => "projector",
        Component::LlmLora => "lora",
        Component::Llm => "llm",
        Component::Head => "head",
        Component::OutputProjector => "output_projector",
    }
}

fn stage_name(s: Stage) -> &'static str {
    match s {
        Stage::Align => "align",
        Stage::Instruct => "instruct",
        Stage::Contrastive => "contrastive",
        Stage::Classify => "classify",
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const GOOD: &str = "stage = \"classify\"\nout_dir = \"runs/x\"\n[data]\npath = \"/nonexistent/hapt.npz\"\n[model.encoder]\ntype = \"cnn\"\n[model.head]\n";

    fn err(text: &str) -> String {
        match Recipe::parse(text, Path::new("r.toml")) {
            Ok(r) => r.validate().unwrap_err().to_string(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn bad_recipes_fail_before_training_naming_the_field() {
        assert!(err(&format!("{GOOD}[train]\nlearning_rate = 1.0\n")).contains("learning_rate"));
        assert!(err(&GOOD.replace("type = \"cnn\"\n", "type = \"cnn\"\nwidht = [4]\n")).contains("widht"));
        assert!(err(&GOOD.replace("[model.head]\n", "[model.head]\nsize = 3\n")).contains("size"));
        let e = err(&GOOD.replace("[model.head]\n", ""));
        assert!(e.contains("model.head") && e.contains("classify"), "{e}");
        let e = err(&GOOD.replace("\"classify\"", "\"align\""));
        assert!(e.contains("model.projector"), "{e}");
        let e = err(GOOD);
        assert!(e.contains("data.path") && e.contains("/nonexistent/hapt.npz"), "{e}");
        assert!(err(&format!("{GOOD}[train]\nbatch_size = 0\n")).contains("train.batch_size"));
    }

    #[test]
    fn a_recipe_round_trips_through_toml() {
        let r = Recipe::parse(GOOD, Path::new("r.toml")).unwrap();
        assert_eq!(Recipe::parse(&r.to_toml().unwrap(), Path::new("again")).unwrap(), r);
    }
}
