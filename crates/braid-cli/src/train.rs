//! `braid train RECIPE.toml [--resume]` and `braid eval RECIPE.toml --model DIR`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::Context;
use anyhow::bail;
use braid_train::recipe::{evaluate_classifier, evaluate_vision, train_classifier, train_vision, train_vqa, ClassifyReport, Recipe, VisionRecipe, VqaRecipe};
use braid_train::Stage;

use crate::data::dataset_path;

/// Train a model as a recipe describes.
#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    /// The recipe (see `recipes/`).
    pub recipe: PathBuf,
    /// Continue the run in the recipe's `out_dir` from its newest complete checkpoint.
    #[arg(long)]
    pub resume: bool,
    /// Override the recipe's `out_dir`.
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
    /// No progress bar (logs still go to `metrics.jsonl`).
    #[arg(long)]
    pub quiet: bool,
}

/// Evaluate a trained model on a recipe's test data (or `vqa`: on easy-VQA); prints one
/// JSON line.
#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    /// The recipe whose `[data]` gives the test set, or `vqa` for a multimodal LLM on
    /// easy-VQA's test questions (with --data).
    pub recipe: PathBuf,
    /// The model directory (`out_dir/model` of a run, or e.g. `models/hapt-imu`).
    #[arg(long)]
    pub model: PathBuf,
    /// `vqa` only: the easy-VQA directory (default: the fetched `easy-vqa`).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// `vqa` only: score the questions of the first N test images (default: all).
    #[arg(long, default_value_t = 0)]
    pub limit: usize,
    /// Where the report goes: `vqa`, a JSON file with per-answer-type accuracy (default:
    /// ./eval_vqa.json); a classifier, a directory for `eval.json` and `confusion.png`
    /// (default: the recipe's `out_dir`). Never inside the model directory unless asked.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// `vqa` only: also write every question, answer and truth here (JSON lines).
    #[arg(long)]
    pub answers: Option<PathBuf>,
}

/// The stage a recipe file names (it decides the recipe's format).
fn stage_of(path: &Path) -> anyhow::Result<Stage> {
    let text = std::fs::read_to_string(path).with_context(|| path.display().to_string())?;
    let value: toml::Table = toml::from_str(&text).with_context(|| path.display().to_string())?;
    let stage = value.get("stage").cloned().with_context(|| format!("{}: config field `stage` is missing", path.display()))?;
    stage.try_into().with_context(|| format!("{}: config field `stage`: expected classify, contrastive, align or instruct", path.display()))
}

fn resolve(name: &Path) -> PathBuf {
    if name.exists() {
        return name.to_path_buf();
    }
    dataset_path(&name.to_string_lossy()).or_else(|_| braid_hub::resolve_model(&name.to_string_lossy())).unwrap_or_else(|_| name.to_path_buf())
}

/// Loads and resolves a recipe: registered dataset names become their fetched files.
pub fn load_recipe(path: &Path) -> anyhow::Result<Recipe> {
    let mut recipe = Recipe::load(path)?;
    for p in std::iter::once(&mut recipe.data.path).chain(recipe.data.test_path.as_mut()) {
        if !p.exists() {
            if let Ok(resolved) = dataset_path(&p.to_string_lossy()) {
                *p = resolved;
            }
        }
    }
    Ok(recipe)
}

pub fn train(args: &TrainArgs) -> anyhow::Result<()> {
    match stage_of(&args.recipe)? {
        Stage::Classify => {}
        Stage::Contrastive => return train_vision_recipe(args),
        Stage::Align | Stage::Instruct => return train_vqa_recipe(args),
    }
    let mut recipe = load_recipe(&args.recipe)?;
    let mut portable = Recipe::load(&args.recipe)?;
    if let Some(dir) = &args.out_dir {
        recipe.out_dir = dir.clone();
        portable.out_dir = dir.clone();
    }
    recipe.validate().with_context(|| format!("recipe {}", args.recipe.display()))?;
    let (report, summary) = train_classifier(&recipe, args.resume, !args.quiet)?;
    // The model keeps the recipe as written (dataset names, not this machine's paths).
    let kept = report.model_dir.join("recipe.toml");
    std::fs::write(&kept, portable.to_toml()?).with_context(|| kept.display().to_string())?;
    eprintln!(
        "trained {} steps{} in {:.1} s ({:.0} samples/s); model: {}; metrics, plots: {}",
        summary.steps,
        summary.resumed_from.map(|s| format!(" (resumed at {s})")).unwrap_or_default(),
        summary.seconds,
        summary.samples_per_s,
        report.model_dir.display(),
        recipe.out_dir.display()
    );
    println!("{}", json_line(&report));
    Ok(())
}

fn train_vision_recipe(args: &TrainArgs) -> anyhow::Result<()> {
    let mut recipe = VisionRecipe::load(&args.recipe)?;
    if let Some(dir) = &args.out_dir {
        recipe.out_dir = dir.clone();
    }
    recipe.resolve(|name| Ok(resolve(Path::new(name))))?;
    recipe.validate().with_context(|| format!("recipe {}", args.recipe.display()))?;
    let (report, summary) = train_vision(&recipe, args.resume, !args.quiet)?;
    eprintln!("trained {} steps in {:.1} s; model: {}", summary.steps, summary.seconds, recipe.out_dir.join("model").display());
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

fn train_vqa_recipe(args: &TrainArgs) -> anyhow::Result<()> {
    let mut recipe = VqaRecipe::load(&args.recipe)?;
    if let Some(dir) = &args.out_dir {
        recipe.out_dir = dir.clone();
    }
    recipe.data.path = resolve(&recipe.data.path);
    recipe.validate().with_context(|| format!("recipe {}", args.recipe.display()))?;
    let run = train_vqa(&recipe, args.resume, !args.quiet)?;
    let s = &run.summary;
    eprintln!("trained {} steps in {:.1} s ({:.2} samples/s); model: {}", s.steps, s.seconds, s.samples_per_s, run.model_dir.display());
    println!("{}", serde_json::json!({"steps": s.steps, "final_loss": s.final_loss, "eval": s.eval, "model": run.model_dir}));
    Ok(())
}

fn eval_vqa(args: &EvalArgs) -> anyhow::Result<()> {
    let data = args.data.clone().unwrap_or_else(|| resolve(Path::new("easy-vqa")));
    if !data.is_dir() {
        bail!("easy-VQA data not found at {} (run `braid fetch easy-vqa` or pass --data)", data.display());
    }
    let pipeline = braid_pipeline::Pipeline::open(&args.model, &candle_core::Device::Cpu).with_context(|| format!("loading {}", args.model.display()))?;
    let report = braid_pipeline::evaluate_vqa(&pipeline, &data, args.limit, std::io::stderr().is_terminal())?;
    println!("{}", serde_json::json!({"accuracy": report.accuracy, "n": report.n, "per_type": report.per_type}));
    let path = args.out.clone().unwrap_or_else(|| PathBuf::from("eval_vqa.json"));
    std::fs::write(&path, serde_json::to_string_pretty(&report)?).with_context(|| path.display().to_string())?;
    if let Some(path) = &args.answers {
        let lines: Vec<String> = report.answers.iter().map(serde_json::to_string).collect::<Result<_, _>>()?;
        std::fs::write(path, lines.join("\n") + "\n").with_context(|| path.display().to_string())?;
    }
    Ok(())
}

pub fn eval(args: &EvalArgs) -> anyhow::Result<()> {
    if args.recipe.as_os_str() == "vqa" {
        return eval_vqa(args);
    }
    if stage_of(&args.recipe)? == Stage::Contrastive {
        let mut recipe = VisionRecipe::load(&args.recipe)?;
        recipe.resolve(|name| Ok(resolve(Path::new(name))))?;
        println!("{}", serde_json::to_string(&evaluate_vision(&recipe, &args.model)?)?);
        return Ok(());
    }
    let recipe = load_recipe(&args.recipe)?;
    let out = args.out.clone().unwrap_or_else(|| recipe.out_dir.clone());
    std::fs::create_dir_all(&out).with_context(|| out.display().to_string())?;
    let report = evaluate_classifier(&recipe, &args.model, &out)?;
    println!("{}", json_line(&report));
    Ok(())
}

fn json_line(r: &ClassifyReport) -> serde_json::Value {
    let per_class: serde_json::Map<String, serde_json::Value> = r.classes.iter().zip(&r.metrics.per_class_f1).map(|(c, f)| (c.clone(), (*f).into())).collect();
    serde_json::json!({
        "accuracy": r.metrics.accuracy,
        "macro_f1": r.metrics.macro_f1,
        "n": r.metrics.n,
        "per_class_f1": per_class,
        "params": r.params,
        "model": r.model_dir,
    })
}
