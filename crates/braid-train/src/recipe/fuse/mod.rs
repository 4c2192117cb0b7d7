//! A `fuse` recipe: a fusion classifier (braid-fusion) over the named inputs of a fusion
//! dataset (`braid data make hapt-fusion | av-digits`, or your own in that layout).
//!
//! ```toml
//! stage = "fuse"
//! out_dir = "runs/fusion/hapt-lmf"
//! modality_dropout = 0.0      # chance that a training batch loses one input
//! [data]
//! path = "runs/data/hapt-fusion"
//! inputs = ["acc", "gyro"]    # default: every input of the data; one input = unimodal
//! [model]
//! hidden = 64
//! impute = "autoencoder"      # optional: autoencoder | adversarial
//! [model.method]              # early | late | weighted_sum | attention | tfn | lmf | mult
//! type = "lmf"                #   | autoencoder | ensemble | shared
//! rank = 4
//! [model.encoders.acc]        # one encoder per input (braid_encoders::EncoderConfig)
//! type = "cnn"
//! channels = 3
//! widths = [32, 64]
//! [train]
//! epochs = 10
//! ```

mod run;
mod task;

use std::collections::BTreeMap;
use std::path::PathBuf;

use braid_core::{Error, Result};
use braid_data::fusion::FusionMeta;
use braid_encoders::EncoderConfig;
use braid_fusion::{FusionMethod, ImputeKind};
use serde::{Deserialize, Serialize};

use crate::TrainConfig;

pub use run::{evaluate_fusion, train_fusion, Corruption, FusionReport, RobustnessPoint};
pub(crate) use task::mix;
pub use task::FuseTask;

/// A `fuse` run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FuseRecipe {
    /// Run directory (the trained model in `model/`).
    pub out_dir: PathBuf,
    /// Chance that a training batch has one input (chosen at random) removed, so the model
    /// learns to predict without it (and, with `impute`, from imputed features).
    #[serde(default)]
    pub modality_dropout: f64,
    /// The data.
    pub data: FuseData,
    /// The model.
    pub model: FuseModel,
    /// Optimisation.
    #[serde(default)]
    pub train: TrainConfig,
}

/// Which fusion dataset and which of its inputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FuseData {
    /// A fusion dataset directory (`fusion.json`, `train.safetensors`, `test.safetensors`).
    pub path: PathBuf,
    /// The inputs the model reads, in order (default: all of the data's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs: Option<Vec<String>>,
}

/// The fusion model a recipe trains.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FuseModel {
    /// The fusion method.
    pub method: FusionMethod,
    /// Width of projections and hidden layers.
    #[serde(default = "default_hidden")]
    pub hidden: usize,
    /// Impute a missing input's features from the others'.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub impute: Option<ImputeKind>,
    /// Weight of the imputer's loss.
    #[serde(default = "default_one")]
    pub impute_weight: f64,
    /// One encoder per input, by input name.
    pub encoders: BTreeMap<String, EncoderConfig>,
    /// Start each encoder from the first of these fusion models that has an input of its
    /// name with the same encoder (e.g. the unimodal baselines, one per input).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub init: Vec<PathBuf>,
    /// Keep the encoders as initialised (transfer): only the fusion layers train.
    #[serde(default)]
    pub freeze_encoders: bool,
}

fn default_hidden() -> usize {
    64
}
fn default_one() -> f64 {
    1.0
}

impl FuseRecipe {
    /// Checks what can be checked before reading the data.
    pub fn validate(&self) -> Result<()> {
        self.train.validate()?;
        if !(0.0..1.0).contains(&self.modality_dropout) {
            return Err(Error::config("modality_dropout", "must be in [0, 1)"));
        }
        if self.model.freeze_encoders && self.model.init.is_empty() {
            return Err(Error::config(
                "model.freeze_encoders",
                "frozen encoders need trained weights: name a model in `model.init`",
            ));
        }
        if !self.data.path.join("fusion.json").is_file() {
            return Err(Error::config(
                "data.path",
                format!(
                    "{} is not a fusion dataset (no fusion.json; `braid data make hapt-fusion` or `av-digits` makes one)",
                    self.data.path.display()
                ),
            ));
        }
        for (i, init) in self.model.init.iter().enumerate() {
            if !init.join(braid_pipeline::PIPELINE_FILE).is_file() {
                return Err(Error::config(
                    format!("model.init[{i}]"),
                    format!("{} is not a model directory", init.display()),
                ));
            }
        }
        Ok(())
    }

    /// The inputs the model reads, checked against the data's and the encoders: an input
    /// the data lacks, or one without an encoder, is an error naming it.
    pub fn inputs(&self, meta: &FusionMeta) -> Result<Vec<String>> {
        let have: Vec<&str> = meta.inputs.iter().map(|i| i.name.as_str()).collect();
        let wanted: Vec<String> = match &self.data.inputs {
            Some(v) => v.clone(),
            None => have.iter().map(|s| s.to_string()).collect(),
        };
        if wanted.is_empty() {
            return Err(Error::config("data.inputs", "names no input"));
        }
        for (i, name) in wanted.iter().enumerate() {
            if !have.contains(&name.as_str()) {
                return Err(Error::config(
                    format!("data.inputs[{i}]"),
                    format!("the data has no input `{name}` (it has: {})", have.join(", ")),
                ));
            }
            if wanted[..i].contains(name) {
                return Err(Error::config(format!("data.inputs[{i}]"), format!("`{name}` twice")));
            }
            if !self.model.encoders.contains_key(name) {
                return Err(Error::config(
                    format!("model.encoders.{name}"),
                    format!("input `{name}` needs an encoder"),
                ));
            }
        }
        if let Some(extra) = self.model.encoders.keys().find(|k| !wanted.contains(k)) {
            return Err(Error::config(
                format!("model.encoders.{extra}"),
                format!("the model reads no input `{extra}` (it reads: {})", wanted.join(", ")),
            ));
        }
        Ok(wanted)
    }
}
