//! Recipes: one TOML file describes a run end to end (stage, data, model, optimisation),
//! in the manner of the LLaVA training scripts' arguments but typed. One [`Recipe`] type,
//! tagged by `stage`, parsed once; every table rejects unknown fields; path fields are
//! resolved in one place ([`Recipe::resolve`]: a registered name, `hf:ORG/NAME`, or a path
//! relative to the recipe file, then to the working directory) with errors naming the
//! field; [`Recipe::validate`] checks the rest before any training.
//!
//! ```toml
//! stage = "classify"        # classify | contrastive | align | instruct | fuse | diffusion
//! out_dir = "runs/hapt-cnn"
//! [data]
//! path = "hapt"
//! [model.encoder]
//! type = "cnn"
//! [model.head]
//! [train]                   # see `TrainConfig`
//! epochs = 30
//! ```
//!
//! A run directory keeps the recipe as written (`recipe.toml`) and as resolved
//! (`config.toml`, also beside each checkpoint); the trained model keeps it as written.

mod classify;
mod conversation;
mod diffusion;
mod fuse;
mod imu;
pub mod pathway;
mod run;
mod vision;

use std::path::{Path, PathBuf};

use braid_core::{Error, Result};
use serde::{Deserialize, Serialize};

pub use classify::{ClassifyRecipe, HeadSpec, ModelSpec};
pub use conversation::{
    train_conversation, ConversationData, ConversationModel, ConversationRecipe, ConversationRun,
    ImageFeatures,
};
pub use diffusion::{
    default_text as default_diffusion_text, default_unet as default_diffusion_unet,
    train_diffusion, DiffusionData, DiffusionExamples, DiffusionModel, DiffusionRecipe,
    DiffusionReport, DiffusionTask,
};
pub use fuse::{
    evaluate_fusion, train_fusion, Corruption, FuseData, FuseModel, FuseRecipe, FuseTask,
    FusionReport, RobustnessPoint,
};
pub use imu::{ImuData, ImuSplit, SubjectSet};
pub use run::{evaluate_classifier, imu_stats, train_classifier, ClassifyReport};
pub use vision::{
    evaluate_vision, train_vision, VisionData, VisionModel, VisionModelFile, VisionModelSpec,
    VisionRecipe, VisionReport, ENCODER_FILE as VISION_ENCODER_FILE,
};

use crate::{RunSummary, Stage, TrainConfig};

/// A training run, as written in `recipes/<dataset>/<stage>.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "stage", rename_all = "snake_case")]
pub enum Recipe {
    /// An encoder and a head on IMU / time-series windows.
    Classify(ClassifyRecipe),
    /// An image encoder against a frozen text tower (InfoNCE).
    Contrastive(VisionRecipe),
    /// Stage 1 of a multimodal LLM: the input projector on captions.
    Align(ConversationRecipe),
    /// Stage 2: projector and LoRA on conversations.
    Instruct(ConversationRecipe),
    /// Preference tuning (DPO): projector and LoRA on chosen/rejected answers, against the
    /// `init` model as the frozen reference.
    Preference(ConversationRecipe),
    /// A fusion classifier over several inputs.
    Fuse(FuseRecipe),
    /// A text-conditioned image generator (diffusion) on captioned images.
    Diffusion(DiffusionRecipe),
}

/// How a run starts, and the recipe text it keeps.
#[derive(Debug, Clone, Default)]
pub struct Launch {
    /// Continue from the newest complete checkpoint.
    pub resume: bool,
    /// Start afresh in an `out_dir` that already holds something (its checkpoints are
    /// removed, the model directory replaced); without this or `resume` such a run is
    /// refused.
    pub overwrite: bool,
    /// Draw a progress bar.
    pub progress: bool,
    /// The recipe as written (kept in the run and model directories).
    pub written: String,
    /// The recipe as resolved (beside each checkpoint).
    pub resolved: String,
    /// Data-parallel training with the other processes of this collective.
    pub dist: Option<crate::dist::Shared>,
}

impl Launch {
    /// How [`crate::fit`] keeps a run in `dir`: resumed or not, with the resolved recipe
    /// beside each checkpoint.
    pub fn run_options(&self, dir: &Path) -> crate::RunOptions {
        crate::RunOptions {
            dir: dir.to_path_buf(),
            resume: self.resume,
            config_toml: self.resolved.clone(),
            progress: self.progress,
            dist: self.dist.clone(),
        }
    }

    /// Writes the trained model to `out_dir/model/` atomically: what `save` writes into
    /// the new directory, and the recipe as written (a record; nothing reads it to run the
    /// model). Returns the model directory.
    pub fn save_model(
        &self,
        out_dir: &Path,
        save: impl FnOnce(&Path) -> Result<()>,
    ) -> Result<PathBuf> {
        let model_dir = out_dir.join("model");
        braid_core::fsx::replace_dir(&model_dir, |tmp| {
            save(tmp)?;
            let kept = tmp.join("recipe.toml");
            std::fs::write(&kept, &self.written).map_err(|e| Error::io(&kept, e))
        })?;
        Ok(model_dir)
    }
}

/// What a run produced.
#[derive(Debug, Clone)]
pub struct Trained {
    /// The model directory.
    pub model_dir: PathBuf,
    /// The loop's summary.
    pub summary: RunSummary,
    /// Held-out scores of the trained model, as JSON.
    pub report: serde_json::Value,
}

impl Recipe {
    /// Reads a recipe; unknown or mistyped fields (and an unknown stage) are errors naming
    /// the field and line.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::parse(&text, path)
    }

    /// Parses recipe text (`path` is for messages).
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        toml::from_str(text)
            .map_err(|e| Error::format(path, e.to_string().trim().replace('\n', " ")))
    }

    /// The recipe as TOML.
    pub fn to_toml(&self) -> Result<String> {
        toml::to_string_pretty(self).map_err(|e| Error::Invalid(format!("recipe to TOML: {e}")))
    }

    /// The stage.
    pub fn stage(&self) -> Stage {
        match self {
            Self::Classify(_) => Stage::Classify,
            Self::Contrastive(_) => Stage::Contrastive,
            Self::Align(_) => Stage::Align,
            Self::Instruct(_) => Stage::Instruct,
            Self::Preference(_) => Stage::Preference,
            Self::Fuse(_) => Stage::Fuse,
            Self::Diffusion(_) => Stage::Diffusion,
        }
    }

    /// The run directory.
    pub fn out_dir(&self) -> &Path {
        match self {
            Self::Classify(r) => &r.out_dir,
            Self::Contrastive(r) => &r.out_dir,
            Self::Align(r) | Self::Instruct(r) | Self::Preference(r) => &r.out_dir,
            Self::Fuse(r) => &r.out_dir,
            Self::Diffusion(r) => &r.out_dir,
        }
    }

    /// Sets the run directory.
    pub fn set_out_dir(&mut self, dir: PathBuf) {
        match self {
            Self::Classify(r) => r.out_dir = dir,
            Self::Contrastive(r) => r.out_dir = dir,
            Self::Align(r) | Self::Instruct(r) | Self::Preference(r) => r.out_dir = dir,
            Self::Fuse(r) => r.out_dir = dir,
            Self::Diffusion(r) => r.out_dir = dir,
        }
    }

    /// The optimisation settings.
    pub fn train(&self) -> &TrainConfig {
        match self {
            Self::Classify(r) => &r.train,
            Self::Contrastive(r) => &r.train,
            Self::Align(r) | Self::Instruct(r) | Self::Preference(r) => &r.train,
            Self::Fuse(r) => &r.train,
            Self::Diffusion(r) => &r.train,
        }
    }

    /// Resolves every path field against `dir` (the recipe file's directory): registered
    /// names become their fetched files, relative paths are looked for beside the recipe,
    /// then in the working directory. A field that names nothing is an error naming it.
    /// The language model's name is left as written when it is registered, so a trained
    /// model keeps naming it.
    pub fn resolve(&mut self, dir: &Path) -> Result<()> {
        let mut fields: Vec<(&str, &mut PathBuf)> = Vec::new();
        match self {
            Self::Classify(r) => {
                fields.push(("data.path", &mut r.data.path));
                if let Some(p) = r.data.test_path.as_mut() {
                    fields.push(("data.test_path", p));
                }
                if let Some(p) = r.model.pathway.as_mut() {
                    fields.push(("model.pathway.from", &mut p.from));
                }
            }
            Self::Contrastive(r) => {
                fields.push(("data.path", &mut r.data.path));
                fields.push(("model.text", &mut r.model.text));
            }
            Self::Fuse(r) => {
                fields.push(("data.path", &mut r.data.path));
                fields.extend(r.model.init.iter_mut().map(|p| ("model.init", p)));
            }
            Self::Diffusion(r) => {
                fields.push(("data.path", &mut r.data.path));
                fields.extend(r.data.eval_path.as_mut().map(|p| ("data.eval_path", p)));
            }
            Self::Align(r) | Self::Instruct(r) | Self::Preference(r) => {
                let (d, m) = (&mut r.data, &mut r.model);
                fields.push(("data.path", &mut d.path));
                fields.extend(d.mix.iter_mut().map(|p| ("data.mix", p)));
                fields.extend(d.eval_path.as_mut().map(|p| ("data.eval_path", p)));
                fields.extend(m.vision.as_mut().map(|p| ("model.vision", p)));
                fields.extend(m.init.as_mut().map(|p| ("model.init", p)));
                if braid_hub::find(&m.llm).is_err() {
                    let llm = resolve_path(&m.llm, dir, "model.llm")?;
                    m.llm = llm.display().to_string();
                }
            }
        }
        for (field, p) in fields {
            *p = resolve_path(&p.to_string_lossy(), dir, field)?;
        }
        Ok(())
    }

    /// Checks what can be checked before training, naming the field.
    pub fn validate(&self) -> Result<()> {
        match self {
            Self::Classify(r) => r.validate(),
            Self::Contrastive(r) => r.validate(),
            Self::Align(r) | Self::Instruct(r) | Self::Preference(r) => r.validate(self.stage()),
            Self::Fuse(r) => r.validate(),
            Self::Diffusion(r) => r.validate(),
        }
    }

    /// Trains as the recipe says (after [`Self::resolve`]); the model goes to
    /// `out_dir/model/`.
    pub fn run(&self, launch: &Launch) -> Result<Trained> {
        self.validate()?;
        let out = self.out_dir().to_path_buf();
        claim_out_dir(&out, launch)?;
        let trained = match self {
            Self::Classify(r) => {
                let (report, summary) = train_classifier(r, launch)?;
                Ok::<_, Error>(Trained {
                    model_dir: report.model_dir.clone(),
                    summary,
                    report: report.line(),
                })
            }
            Self::Contrastive(r) => {
                let (report, summary) = train_vision(r, launch)?;
                Ok(Trained { model_dir: out.join("model"), summary, report: to_json(&report)? })
            }
            Self::Align(r) | Self::Instruct(r) | Self::Preference(r) => {
                let run = train_conversation(r, self.stage(), launch)?;
                let report = serde_json::json!({ "final_loss": run.summary.final_loss, "eval": run.summary.eval });
                Ok(Trained { model_dir: run.model_dir, summary: run.summary, report })
            }
            Self::Fuse(r) => {
                let (report, summary) = train_fusion(r, launch)?;
                Ok(Trained { model_dir: report.model_dir.clone(), summary, report: report.line() })
            }
            Self::Diffusion(r) => {
                let (report, summary) = train_diffusion(r, launch)?;
                Ok(Trained {
                    model_dir: report.model_dir.clone(),
                    summary,
                    report: to_json(&report)?,
                })
            }
        }?;
        let kept = out.join("recipe.toml");
        std::fs::write(&kept, &launch.written).map_err(|e| Error::io(&kept, e))?;
        Ok(trained)
    }
}

/// A fresh run needs an empty (or missing) `out_dir`, so that a mistyped path never
/// replaces another run's model; `--overwrite` clears the previous run's checkpoints so
/// the loop starts afresh, `--resume` continues it.
fn claim_out_dir(out: &Path, launch: &Launch) -> Result<()> {
    if launch.resume {
        return Ok(());
    }
    let mut held: Vec<String> = match std::fs::read_dir(out) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(out, e)),
    };
    if held.is_empty() {
        return Ok(());
    }
    if !launch.overwrite {
        held.sort();
        let shown = held.iter().take(4).map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ");
        let more =
            if held.len() > 4 { format!(" and {} more", held.len() - 4) } else { String::new() };
        return Err(Error::config(
            "out_dir",
            format!(
                "{} is not empty (holds {shown}{more}); pass --resume to continue its run, --overwrite to replace it, or choose another out_dir",
                out.display()
            ),
        ));
    }
    let ckpts = out.join("checkpoints");
    match std::fs::symlink_metadata(&ckpts) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(&ckpts).map_err(|e| Error::io(&ckpts, e)),
        Ok(_) => std::fs::remove_file(&ckpts).map_err(|e| Error::io(&ckpts, e)),
        Err(_) => Ok(()),
    }
}

fn to_json<T: Serialize>(v: &T) -> Result<serde_json::Value> {
    serde_json::to_value(v).map_err(|e| Error::Invalid(format!("report to JSON: {e}")))
}

/// One path field: [`braid_hub::resolve_field`] beside the recipe, then in the working
/// directory; the error names the field and both places looked.
fn resolve_path(name: &str, dir: &Path, field: &str) -> Result<PathBuf> {
    match braid_hub::resolve_field(name, dir, field) {
        Ok(p) => Ok(p),
        Err(first) => braid_hub::resolve_field(name, Path::new("."), field).map_err(|_| first),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn overwrite_train_into_a_non_empty_out_dir_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let out = root.path().join("run");
        let fresh = Launch::default();
        assert!(claim_out_dir(&out, &fresh).is_ok(), "a missing out_dir");
        std::fs::create_dir_all(out.join("model")).unwrap();
        std::fs::write(out.join("model/keep.safetensors"), "x").unwrap();
        std::fs::create_dir_all(out.join("checkpoints/step-0000001")).unwrap();
        let msg = claim_out_dir(&out, &fresh).unwrap_err().to_string();
        assert!(
            msg.contains("out_dir")
                && msg.contains("`checkpoints`, `model`")
                && msg.contains("--overwrite")
                && msg.contains("--resume")
                && !msg.contains('\n'),
            "{msg}"
        );
        assert!(out.join("model/keep.safetensors").is_file(), "nothing removed");
        let resume = Launch { resume: true, ..Launch::default() };
        assert!(claim_out_dir(&out, &resume).is_ok());
        assert!(out.join("checkpoints").is_dir());
        let overwrite = Launch { overwrite: true, ..Launch::default() };
        assert!(claim_out_dir(&out, &overwrite).is_ok());
        assert!(!out.join("checkpoints").exists(), "the old run's checkpoints go");
        assert!(out.join("model/keep.safetensors").is_file(), "the model is replaced later");
    }
}
