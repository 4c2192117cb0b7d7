//! Running a `fuse` recipe and scoring its model: the fusion classifier trained on the
//! data's training split, saved as a model directory like every other (`pipeline.toml`
//! with `[fusion]`: inputs, encoders, standardisation, method, classes;
//! `fusion.safetensors`), and scored on the test split as it is, with inputs corrupted by
//! noise or missing (MultiBench's robustness protocol), or over a sweep of both.

use std::path::{Path, PathBuf};

use braid_core::{Error, Result};
use braid_data::fusion::FusionDataset;
use braid_fusion::{FusionConfig, FusionInput};
use braid_pipeline::{Pipeline, PipelineConfig, Weights};
use candle_core::{Device, Tensor};
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use super::task::{FuseTask, FusionExamples};
use super::FuseRecipe;
use crate::classify::ClassMetrics;
use crate::recipe::Launch;
use crate::{fit, plot, RunSummary};

const EVAL_BATCH: usize = 256;

/// Noise levels of the robustness sweep, in units of each channel's training std.
pub const NOISE_LEVELS: [f64; 6] = [0.0, 0.25, 0.5, 1.0, 2.0, 4.0];

/// What is done to the test inputs before scoring.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Corruption {
    /// Inputs removed (the model imputes or skips them).
    pub drop: Vec<String>,
    /// Gaussian noise added to an input, `level` times each channel's training std.
    pub noise: Vec<(String, f64)>,
    /// Seed of the noise.
    pub seed: u64,
}

impl Corruption {
    /// Parses `NAME=LEVEL`.
    pub fn parse_noise(text: &str) -> Result<(String, f64)> {
        let bad =
            || Error::config("--noise", format!("`{text}` is not INPUT=LEVEL (e.g. gyro=0.5)"));
        let (name, level) = text.split_once('=').ok_or_else(bad)?;
        let level: f64 = level.trim().parse().map_err(|_| bad())?;
        if !(level >= 0.0 && level.is_finite()) {
            return Err(Error::config("--noise", format!("level {level} must be finite and >= 0")));
        }
        Ok((name.trim().to_string(), level))
    }

    /// The test inputs as corrupted: names checked against the model's inputs.
    pub fn apply(&self, cfg: &FusionConfig, inputs: &[Tensor]) -> Result<Vec<Option<Tensor>>> {
        let mut out: Vec<Option<Tensor>> = inputs.iter().cloned().map(Some).collect();
        for (name, level) in &self.noise {
            let i = cfg.input(name)?;
            if let Some(x) = &out[i] {
                out[i] = Some(noisy(x, &cfg.inputs[i], *level, self.seed.wrapping_add(i as u64))?);
            }
        }
        for name in &self.drop {
            out[cfg.input(name)?] = None;
        }
        if out.iter().all(Option::is_none) {
            return Err(Error::config("--drop", "every input of the model would be missing"));
        }
        Ok(out)
    }
}

/// `x + level * std_c * N(0, 1)`, seeded (Box-Muller on a seeded generator).
fn noisy(x: &Tensor, input: &FusionInput, level: f64, seed: u64) -> Result<Tensor> {
    if level == 0.0 {
        return Ok(x.clone());
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let n = x.elem_count();
    let noise: Vec<f32> = (0..n)
        .map(|_| {
            let (u1, u2): (f64, f64) = (rng.gen::<f64>().max(1e-12), rng.gen());
            ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
        })
        .collect();
    let noise = Tensor::from_vec(noise, x.shape(), x.device())?;
    let c = input.shape[0];
    let std = if input.std.is_empty() { vec![1.0; c] } else { input.std.clone() };
    let mut shape = vec![1, c];
    shape.extend(std::iter::repeat_n(1, input.shape.len() - 1));
    let scale = (Tensor::from_slice(&std, shape.as_slice(), x.device())? * level)?;
    Ok((x + noise.broadcast_mul(&scale)?)?)
}

/// Accuracy with one input corrupted or removed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RobustnessPoint {
    /// The input.
    pub input: String,
    /// Noise level (`None`: the input is missing).
    pub noise: Option<f64>,
    /// Accuracy.
    pub accuracy: f64,
    /// Macro-F1.
    pub macro_f1: f64,
}

/// What a fusion run or evaluation produced.
#[derive(Debug, Clone, Serialize)]
pub struct FusionReport {
    /// Scores on the (corrupted) test set.
    pub metrics: ClassMetrics,
    /// Class names.
    pub classes: Vec<String>,
    /// The model's inputs.
    pub inputs: Vec<String>,
    /// The method (`lmf`, ...).
    pub method: String,
    /// Parameters (encoders and fusion).
    pub params: usize,
    /// The model directory.
    pub model_dir: PathBuf,
    /// Training wall time of this invocation, seconds (0 for an evaluation).
    pub train_seconds: f64,
    /// What was done to the test inputs.
    pub corruption: Corruption,
    /// The robustness sweep, when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub robustness: Option<Vec<RobustnessPoint>>,
}

impl FusionReport {
    /// The one-line JSON `braid train` and `braid eval` print.
    pub fn line(&self) -> serde_json::Value {
        let mut v = serde_json::json!({
            "accuracy": self.metrics.accuracy,
            "macro_f1": self.metrics.macro_f1,
            "n": self.metrics.n,
            "method": self.method,
            "inputs": self.inputs,
            "params": self.params,
            "model": self.model_dir,
        });
        if !self.corruption.drop.is_empty() {
            v["drop"] = serde_json::json!(self.corruption.drop);
        }
        if !self.corruption.noise.is_empty() {
            v["noise"] = serde_json::json!(self.corruption.noise);
        }
        if self.train_seconds > 0.0 {
            v["train_seconds"] = serde_json::json!(self.train_seconds);
        }
        v
    }
}

fn method_name(cfg: &FusionConfig) -> String {
    let v = serde_json::to_value(&cfg.method).unwrap_or_default();
    let name = v.get("type").and_then(|t| t.as_str()).unwrap_or("?").to_string();
    match cfg.impute {
        Some(k) => format!(
            "{name}+impute_{}",
            serde_json::to_value(k)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default()
        ),
        None => name,
    }
}

/// Per-channel (dim 1) mean and std of `x` `[n, c, ...]`.
fn channel_stats(x: &Tensor) -> Result<(Vec<f32>, Vec<f32>)> {
    let c = x.dim(1)?;
    let per =
        x.transpose(0, 1)?.contiguous()?.reshape((c, ()))?.to_dtype(candle_core::DType::F64)?;
    let mean = per.mean(1)?;
    let var = per.broadcast_sub(&mean.unsqueeze(1)?)?.sqr()?.mean(1)?;
    let mean: Vec<f64> = mean.to_vec1()?;
    let std: Vec<f64> = var.to_vec1()?;
    Ok((
        mean.iter().map(|m| *m as f32).collect(),
        std.iter().map(|v| (v.sqrt() as f32).max(1e-6)).collect(),
    ))
}

/// The position of input `name` in `data`.
fn input_index(data: &FusionDataset, name: &str) -> Result<usize> {
    data.meta.input(name).ok_or_else(|| Error::config("data.inputs", format!("no input `{name}`")))
}

/// The model's configuration for `recipe` on `data`.
fn fusion_config(
    recipe: &FuseRecipe,
    data: &FusionDataset,
    names: &[String],
) -> Result<FusionConfig> {
    let inputs = names
        .iter()
        .map(|name| {
            let i = input_index(data, name)?;
            let meta = &data.meta.inputs[i];
            let (mean, std) = channel_stats(&data.train.inputs[i])?;
            Ok(FusionInput {
                name: name.clone(),
                modality: meta.modality,
                shape: meta.shape.clone(),
                encoder: recipe.model.encoders[name].clone(),
                mean,
                std,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let m = &recipe.model;
    let cfg = FusionConfig {
        method: m.method.clone(),
        hidden: m.hidden,
        impute: m.impute,
        impute_weight: m.impute_weight,
        classes: data.meta.classes.clone(),
        inputs,
    };
    cfg.validate("model")?;
    Ok(cfg)
}

/// The examples of `split` for the inputs `names`, in that order.
fn examples(
    data: &FusionDataset,
    split: &braid_data::fusion::FusionSplit,
    names: &[String],
) -> Result<FusionExamples> {
    let inputs = names
        .iter()
        .map(|n| {
            let i = input_index(data, n)?;
            Ok(split.inputs[i].clone())
        })
        .collect::<Result<_>>()?;
    Ok(FusionExamples { inputs, labels: split.labels.clone() })
}

/// Copies each encoder of `model` from the first model in `init` that has it (the
/// unimodal baselines, one per input, or one fused model holding all).
fn init_encoders(model: &Pipeline, init: &[PathBuf]) -> Result<()> {
    let fusion_vars = |p: &Pipeline| {
        p.var_maps().into_iter().find(|(n, _)| n == "fusion").map(|(_, v)| v.clone())
    };
    let target = fusion_vars(model)
        .ok_or_else(|| Error::Invalid("the model being trained is not a fusion model".into()))?;
    let mut sources = Vec::with_capacity(init.len());
    for (i, dir) in init.iter().enumerate() {
        let from = Pipeline::open(dir, Weights::Frozen { dequantize: false }, &Device::Cpu)?;
        let vars = fusion_vars(&from).ok_or_else(|| {
            Error::config(
                format!("model.init[{i}]"),
                format!("{} is not a fusion model", dir.display()),
            )
        })?;
        sources.push((dir, vars));
    }
    let lock = crate::optim::named_vars;
    let sources =
        sources.iter().map(|(dir, vars)| Ok((*dir, lock(vars)?))).collect::<Result<Vec<_>>>()?;
    for (name, var) in
        lock(&target)?.iter().filter(|(n, _)| n.starts_with(braid_fusion::ENCODER_PREFIX))
    {
        let Some((dir, s)) = sources.iter().find_map(|(d, m)| m.get(name).map(|s| (d, s))) else {
            return Err(Error::config(
                "model.init",
                format!("no model in `model.init` has `{name}` (their inputs must carry this model's input names)"),
            ));
        };
        if s.dims() != var.dims() {
            return Err(Error::config(
                "model.init",
                format!(
                    "`{name}` is {:?} in {} but {:?} here",
                    s.dims(),
                    dir.display(),
                    var.dims()
                ),
            ));
        }
        var.set(s.as_tensor())?;
    }
    Ok(())
}

fn params(p: &Pipeline) -> usize {
    p.var_maps().iter().flat_map(|(_, vm)| vm.all_vars()).map(|v| v.elem_count()).sum()
}

/// Trains the recipe's fusion classifier and saves the model.
pub fn train_fusion(recipe: &FuseRecipe, launch: &Launch) -> Result<(FusionReport, RunSummary)> {
    recipe.validate()?;
    let data = FusionDataset::load(&recipe.data.path)?;
    let names = recipe.inputs(&data.meta)?;
    let cfg = fusion_config(recipe, &data, &names)?;
    let pcfg = PipelineConfig { fusion: Some(cfg.clone()), ..Default::default() };
    let model = Pipeline::init_seeded(&pcfg, Path::new("."), &Device::Cpu, recipe.train.seed)?;
    if !recipe.model.init.is_empty() {
        init_encoders(&model, &recipe.model.init)?;
    }
    let test = examples(&data, &data.test, &names)?;
    let task = FuseTask {
        model: &model,
        train: examples(&data, &data.train, &names)?,
        eval: Some(test.clone()),
        modality_dropout: recipe.modality_dropout,
        train_encoders: !recipe.model.freeze_encoders,
        eval_batch: EVAL_BATCH,
    };
    let summary = fit(&task, &recipe.train, &launch.run_options(&recipe.out_dir))?;
    let model_dir = launch.save_model(&recipe.out_dir, |tmp| model.save(tmp))?;
    let inputs: Vec<Option<Tensor>> = test.inputs.iter().cloned().map(Some).collect();
    let report = FusionReport {
        metrics: FuseTask::score(&model, &inputs, &test.labels, EVAL_BATCH)?,
        classes: cfg.classes.clone(),
        inputs: names,
        method: method_name(&cfg),
        params: params(&model),
        model_dir,
        train_seconds: summary.seconds,
        corruption: Corruption::default(),
        robustness: None,
    };
    write_report(&report, &recipe.out_dir)?;
    Ok((report, summary))
}

/// Scores a saved fusion model on the test split of `data_dir` with `corruption`, and,
/// with `sweep`, over every input's noise levels and its absence (`robustness.json`,
/// `robustness.png`); writes `eval.json` and `confusion.png` into `report_dir` if given.
pub fn evaluate_fusion(
    data_dir: &Path,
    model_dir: &Path,
    report_dir: Option<&Path>,
    corruption: &Corruption,
    sweep: bool,
) -> Result<FusionReport> {
    let model = Pipeline::open(model_dir, Weights::Frozen { dequantize: false }, &Device::Cpu)?;
    let cfg = model
        .fusion()
        .ok_or_else(|| {
            Error::format(model_dir, "not a fusion model (no [fusion] in pipeline.toml)")
        })?
        .config()
        .clone();
    let data = FusionDataset::load(data_dir)?;
    if data.meta.classes != cfg.classes {
        return Err(Error::config(
            "data.path",
            format!(
                "the data's classes {:?} differ from the model's {:?}",
                data.meta.classes, cfg.classes
            ),
        ));
    }
    let names: Vec<String> = cfg.inputs.iter().map(|i| i.name.clone()).collect();
    for input in &cfg.inputs {
        let i = data.meta.input(&input.name).ok_or_else(|| {
            Error::config(
                "data.path",
                format!("the data has no input `{}`, which the model reads", input.name),
            )
        })?;
        if data.meta.inputs[i].shape != input.shape {
            return Err(Error::shape(
                format!("data input `{}`", input.name),
                &input.shape,
                &data.meta.inputs[i].shape,
            ));
        }
    }
    let test = examples(&data, &data.test, &names)?;
    let inputs = corruption.apply(&cfg, &test.inputs)?;
    let metrics = FuseTask::score(&model, &inputs, &test.labels, EVAL_BATCH)?;
    let robustness = sweep.then(|| robustness(&model, &cfg, &test, corruption.seed)).transpose()?;
    let report = FusionReport {
        metrics,
        classes: cfg.classes.clone(),
        inputs: names,
        method: method_name(&cfg),
        params: params(&model),
        model_dir: model_dir.to_path_buf(),
        train_seconds: 0.0,
        corruption: corruption.clone(),
        robustness,
    };
    if let Some(dir) = report_dir {
        write_report(&report, dir)?;
        if let Some(points) = &report.robustness {
            plot_robustness(&dir.join("robustness.png"), &report, points)?;
        }
    }
    Ok(report)
}

fn robustness(
    model: &Pipeline,
    cfg: &FusionConfig,
    test: &FusionExamples,
    seed: u64,
) -> Result<Vec<RobustnessPoint>> {
    let mut points = Vec::new();
    for input in &cfg.inputs {
        let mut runs: Vec<Corruption> = NOISE_LEVELS
            .iter()
            .map(|&l| Corruption { drop: vec![], noise: vec![(input.name.clone(), l)], seed })
            .collect();
        if cfg.inputs.len() > 1 {
            runs.push(Corruption { drop: vec![input.name.clone()], noise: vec![], seed });
        }
        for c in runs {
            let m = FuseTask::score(model, &c.apply(cfg, &test.inputs)?, &test.labels, EVAL_BATCH)?;
            points.push(RobustnessPoint {
                input: input.name.clone(),
                noise: c.noise.first().map(|(_, l)| *l),
                accuracy: m.accuracy,
                macro_f1: m.macro_f1,
            });
        }
    }
    Ok(points)
}

/// Accuracy against noise level, one line per corrupted input, and a flat line at the
/// accuracy with that input missing.
fn plot_robustness(path: &Path, report: &FusionReport, points: &[RobustnessPoint]) -> Result<()> {
    let top = NOISE_LEVELS[NOISE_LEVELS.len() - 1];
    let mut series = Vec::new();
    for name in &report.inputs {
        let curve: Vec<(f64, f64)> = points
            .iter()
            .filter(|p| &p.input == name)
            .filter_map(|p| p.noise.map(|l| (l, 100.0 * p.accuracy)))
            .collect();
        series.push((format!("noise on {name}"), curve));
        if let Some(p) = points.iter().find(|p| &p.input == name && p.noise.is_none()) {
            series.push((
                format!("{name} missing"),
                vec![(0.0, 100.0 * p.accuracy), (top, 100.0 * p.accuracy)],
            ));
        }
    }
    let title = format!("{} ({}): test accuracy %", report.method, report.inputs.join(" + "));
    plot::line_chart_xy(path, &title, "noise level (x training std)", &series)
}

fn write_report(report: &FusionReport, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let path = dir.join("eval.json");
    let json =
        serde_json::to_string_pretty(report).map_err(|e| Error::format(&path, e.to_string()))?;
    braid_core::fsx::write_file(&path, json.as_bytes())?;
    plot::confusion_png(&dir.join("confusion.png"), &report.metrics.confusion, &report.classes)
}
