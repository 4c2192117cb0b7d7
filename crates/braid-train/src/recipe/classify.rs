//! A `classify` recipe: an IMU / time-series encoder and a linear head trained by
//! cross-entropy on sliding windows.
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

use std::path::PathBuf;

use braid_core::{Error, Result};
use braid_encoders::EncoderConfig;
use serde::{Deserialize, Serialize};

use super::ImuData;
use crate::classify::Augment;
use crate::{Component, Stage, TrainConfig};

/// A `classify` run: an encoder and a head on IMU / time-series windows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassifyRecipe {
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
    /// Multimodal Pathway into the patch transformer from another modality's transformer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pathway: Option<super::pathway::PathwaySource>,
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

impl ClassifyRecipe {
    /// Checks what can be checked before training: the optimisation settings, the data
    /// path, and that the model has every component the stage trains.
    pub fn validate(&self) -> Result<()> {
        self.train.validate()?;
        if let (Some(_), Some(enc)) = (&self.model.pathway, &self.model.encoder) {
            super::pathway::with_pathway(enc, true)?;
        }
        let have = self.model.components();
        for need in Stage::Classify.trainable() {
            if !have.contains(need) {
                let field = format!("model.{}", component_field(*need));
                return Err(Error::config(
                    field,
                    format!(
                        "stage `classify` trains the {need:?} component, which this model lacks"
                    ),
                ));
            }
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
        Component::Generator => "generator",
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::super::Recipe;
    use std::path::Path;

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
        assert!(err(&GOOD.replace("type = \"cnn\"\n", "type = \"cnn\"\nwidht = [4]\n"))
            .contains("widht"));
        assert!(err(&GOOD.replace("[model.head]\n", "[model.head]\nsize = 3\n")).contains("size"));
        let e = err(&GOOD.replace("[model.head]\n", ""));
        assert!(e.contains("model.head") && e.contains("classify"), "{e}");
        let e = err(&GOOD.replace("\"classify\"", "\"clasify\""));
        assert!(e.contains("clasify") && e.contains("classify") && e.contains("instruct"), "{e}");
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
