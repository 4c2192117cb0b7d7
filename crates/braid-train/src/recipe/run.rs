//! Running a `classify` recipe: data, seeded model, [`fit`], then the trained model as a
//! directory (`out_dir/model/`, loadable by `braid eval` and `braid demo`) with its test
//! metrics (`eval.json`) and confusion matrix (`confusion.png`).

use std::path::{Path, PathBuf};

use braid_core::{Error, Result};
use candle_core::{DType, Device};
use candle_nn::VarMap;
use serde::Serialize;

use super::Recipe;
use crate::classify::{ClassMetrics, Classifier, ClassifyTask};
use crate::init::seeded_var_builder;
use crate::{fit, plot, RunOptions, RunSummary};

const EVAL_BATCH: usize = 256;

/// What a classification run or evaluation produced.
#[derive(Debug, Clone, Serialize)]
pub struct ClassifyReport {
    /// Scores on the test set.
    pub metrics: ClassMetrics,
    /// Class names.
    pub classes: Vec<String>,
    /// Parameters of the model (encoder + head).
    pub params: usize,
    /// The model directory.
    pub model_dir: PathBuf,
    /// Training wall time of this invocation, seconds (0 for an evaluation).
    pub train_seconds: f64,
}

fn count(vm: &VarMap) -> usize {
    vm.all_vars().iter().map(|v| v.elem_count()).sum()
}

/// Trains the recipe's classifier (resuming its run when asked) and saves the model.
pub fn train_classifier(recipe: &Recipe, resume: bool, progress: bool) -> Result<(ClassifyReport, RunSummary)> {
    recipe.validate()?;
    let enc_cfg = recipe.model.encoder.as_ref().ok_or_else(|| Error::config("model.encoder", "missing"))?;
    let split = recipe.data.load()?;
    let (enc_vars, head_vars) = (VarMap::new(), VarMap::new());
    let seed = recipe.train.seed;
    let encoder = enc_cfg.build(seeded_var_builder(&enc_vars, seed, DType::F32, &Device::Cpu))?;
    let model = Classifier::new(encoder, split.classes.clone(), seeded_var_builder(&head_vars, seed.wrapping_add(1), DType::F32, &Device::Cpu))?;
    let task = ClassifyTask {
        model: &model,
        encoder_vars: (!recipe.model.freeze_encoder).then_some(&enc_vars),
        head_vars: &head_vars,
        train: split.train.clone(),
        eval: Some(split.test.clone()),
        augment: recipe.augment,
        eval_batch: EVAL_BATCH,
    };
    let run = RunOptions { dir: recipe.out_dir.clone(), resume, config_toml: recipe.to_toml()?, progress };
    let summary = fit(&task, &recipe.train, &run)?;
    let model_dir = recipe.out_dir.join("model");
    let tmp = recipe.out_dir.join("model.tmp");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    }
    Classifier::save_imu(&tmp, enc_cfg, &enc_vars, &head_vars, Some(&split.stats), &split.classes)?;
    std::fs::write(tmp.join("recipe.toml"), recipe.to_toml()?).map_err(|e| Error::io(tmp.join("recipe.toml"), e))?;
    if model_dir.exists() {
        std::fs::remove_dir_all(&model_dir).map_err(|e| Error::io(&model_dir, e))?;
    }
    std::fs::rename(&tmp, &model_dir).map_err(|e| Error::io(&model_dir, e))?;
    let metrics = ClassifyTask::score(&model, &split.test, EVAL_BATCH)?;
    let report = ClassifyReport { metrics, classes: split.classes, params: count(&enc_vars) + count(&head_vars), model_dir, train_seconds: summary.seconds };
    write_report(&report, &recipe.out_dir)?;
    Ok((report, summary))
}

/// Scores a saved classifier on the recipe's test set, standardised with the model's own
/// statistics; writes `eval.json` and `confusion.png` into the model directory.
pub fn evaluate_classifier(recipe: &Recipe, model_dir: &Path) -> Result<ClassifyReport> {
    recipe.data.validate()?;
    let (model, stats) = Classifier::load_imu(model_dir, &Device::Cpu)?;
    let split = recipe.data.load_with(stats.as_ref())?;
    if split.classes != model.classes {
        return Err(Error::config("data.classes", format!("the data's classes {:?} differ from the model's {:?} ({})", split.classes, model.classes, model_dir.display())));
    }
    let metrics = ClassifyTask::score(&model, &split.test, EVAL_BATCH)?;
    let params = model.params;
    let report = ClassifyReport { metrics, classes: split.classes, params, model_dir: model_dir.to_path_buf(), train_seconds: 0.0 };
    write_report(&report, model_dir)?;
    Ok(report)
}

fn write_report(report: &ClassifyReport, dir: &Path) -> Result<()> {
    let path = dir.join("eval.json");
    let json = serde_json::to_string_pretty(report).map_err(|e| Error::format(&path, e.to_string()))?;
    std::fs::write(&path, json).map_err(|e| Error::io(&path, e))?;
    plot::confusion_png(&dir.join("confusion.png"), &report.metrics.confusion, &report.classes)
}
