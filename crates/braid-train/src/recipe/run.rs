//! Running a `classify` recipe: data, seeded model, [`fit`], then the trained model as a
//! model directory like every other (`out_dir/model/`: `pipeline.toml` with the encoder,
//! the input statistics and window, and the head's classes; `encoder.<modality>` and
//! `head` safetensors), which `braid eval` and `braid demo` open with `Pipeline::open`,
//! with its test metrics (`eval.json`) and confusion matrix (`confusion.png`).

use std::path::{Path, PathBuf};

use braid_core::{Error, Modality, Result};
use braid_data::imu::ChannelStats;
use braid_pipeline::{
    EncoderSlot, HeadConfig, ImuPreprocess, Pipeline, PipelineConfig, Preprocess,
};
use candle_core::Device;
use serde::Serialize;

use super::{ClassifyRecipe, Launch};
use crate::classify::{ClassMetrics, ClassifyTask};
use crate::{fit, plot, RunSummary};

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

impl ClassifyReport {
    /// The one-line JSON `braid train` and `braid eval` print: accuracy, macro-F1, test
    /// windows, F1 per class, parameters, the model directory.
    pub fn line(&self) -> serde_json::Value {
        let per_class: serde_json::Map<String, serde_json::Value> = self
            .classes
            .iter()
            .zip(&self.metrics.per_class_f1)
            .map(|(c, f)| (c.clone(), (*f).into()))
            .collect();
        serde_json::json!({
            "accuracy": self.metrics.accuracy,
            "macro_f1": self.metrics.macro_f1,
            "n": self.metrics.n,
            "per_class_f1": per_class,
            "params": self.params,
            "model": self.model_dir,
        })
    }
}

fn params(p: &Pipeline) -> usize {
    p.var_maps().iter().flat_map(|(_, vm)| vm.all_vars()).map(|v| v.elem_count()).sum()
}

/// The model directory's description of a classifier of IMU windows.
fn classifier_config(
    recipe: &ClassifyRecipe,
    stats: &ChannelStats,
    classes: &[String],
) -> Result<PipelineConfig> {
    let encoder =
        recipe.model.encoder.clone().ok_or_else(|| Error::config("model.encoder", "missing"))?;
    let w = &recipe.data.window;
    let slot = EncoderSlot {
        modality: Modality::Imu,
        model: None,
        placeholder: None,
        token_id: None,
        encoder: Some(encoder),
        preprocess: Some(Preprocess::Imu(ImuPreprocess::from_stats(
            stats,
            Some(w.length),
            Some(w.stride),
        ))),
        projector: None,
    };
    Ok(PipelineConfig {
        encoders: vec![slot],
        head: Some(HeadConfig { classes: classes.to_vec() }),
        ..Default::default()
    })
}

/// Trains the recipe's classifier (resuming its run when asked) and saves the model.
pub fn train_classifier(
    recipe: &ClassifyRecipe,
    launch: &Launch,
) -> Result<(ClassifyReport, RunSummary)> {
    recipe.validate()?;
    let split = recipe.data.load()?;
    let mut cfg = classifier_config(recipe, &split.stats, &split.classes)?;
    let pathway = recipe.model.pathway.as_ref();
    if pathway.is_some() {
        for slot in &mut cfg.encoders {
            if let Some(enc) = &slot.encoder {
                slot.encoder = Some(super::pathway::with_pathway(enc, true)?);
            }
        }
    }
    let model = Pipeline::init_seeded(&cfg, Path::new("."), &Device::Cpu, recipe.train.seed)?;
    if let Some(src) = pathway {
        super::pathway::fill_aux(&model, &format!("encoder.{}", Modality::Imu), src)?;
    }
    let task = ClassifyTask {
        model: &model,
        modality: Modality::Imu,
        train_encoder: !recipe.model.freeze_encoder,
        train: split.train.clone(),
        eval: Some(split.test.clone()),
        augment: recipe.augment,
        eval_batch: EVAL_BATCH,
        frozen_suffix: pathway.filter(|p| !p.train_aux).map(|_| super::pathway::AUX_SUFFIX),
    };
    let summary = fit(&task, &recipe.train, &launch.run_options(&recipe.out_dir))?;
    let model = match pathway {
        Some(p) if p.merge => super::pathway::merge(&model, &cfg)?,
        _ => model,
    };
    let model_dir = launch.save_model(&recipe.out_dir, |tmp| model.save(tmp))?;
    let metrics = ClassifyTask::score(&model, Modality::Imu, &split.test, EVAL_BATCH)?;
    let report = ClassifyReport {
        metrics,
        classes: split.classes,
        params: params(&model),
        model_dir,
        train_seconds: summary.seconds,
    };
    write_report(&report, &recipe.out_dir)?;
    Ok((report, summary))
}

/// The input statistics an IMU classifier standardises with.
pub fn imu_stats(model: &Pipeline) -> Result<ChannelStats> {
    match model.config().slot(Modality::Imu).and_then(|s| s.preprocess.as_ref()) {
        Some(Preprocess::Imu(p)) => p.stats(),
        _ => Err(Error::config(
            "encoders.imu.preprocess",
            "the model does not say how its IMU inputs were standardised",
        )),
    }
}

/// Scores a saved classifier on the recipe's test set, standardised with the model's own
/// statistics; writes `eval.json` and `confusion.png` into `report_dir`.
pub fn evaluate_classifier(
    recipe: &ClassifyRecipe,
    model_dir: &Path,
    report_dir: &Path,
) -> Result<ClassifyReport> {
    recipe.data.validate()?;
    let model = Pipeline::open(
        model_dir,
        braid_pipeline::Weights::Frozen { dequantize: false },
        &Device::Cpu,
    )?;
    let split = recipe.data.load_with(Some(&imu_stats(&model)?))?;
    let classes = model.classes().unwrap_or_default();
    if split.classes != classes {
        return Err(Error::config(
            "data.classes",
            format!(
                "the data's classes {:?} differ from the model's {classes:?} ({})",
                split.classes,
                model_dir.display()
            ),
        ));
    }
    let metrics = ClassifyTask::score(&model, Modality::Imu, &split.test, EVAL_BATCH)?;
    let report = ClassifyReport {
        metrics,
        classes: split.classes,
        params: params(&model),
        model_dir: model_dir.to_path_buf(),
        train_seconds: 0.0,
    };
    write_report(&report, report_dir)?;
    Ok(report)
}

fn write_report(report: &ClassifyReport, dir: &Path) -> Result<()> {
    let path = dir.join("eval.json");
    let json =
        serde_json::to_string_pretty(report).map_err(|e| Error::format(&path, e.to_string()))?;
    braid_core::fsx::write_file(&path, json.as_bytes())?;
    plot::confusion_png(&dir.join("confusion.png"), &report.metrics.confusion, &report.classes)
}
