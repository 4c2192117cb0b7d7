//! `braid train RECIPE.toml [--resume]` and `braid eval RECIPE.toml --model DIR`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use braid_train::recipe::{evaluate_classifier, train_classifier, ClassifyReport, Recipe};

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

/// Evaluate a trained model on a recipe's test data; prints one JSON line.
#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    /// The recipe whose `[data]` gives the test set.
    pub recipe: PathBuf,
    /// The model directory (`out_dir/model` of a run, or e.g. `models/hapt-imu`).
    #[arg(long)]
    pub model: PathBuf,
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

pub fn eval(args: &EvalArgs) -> anyhow::Result<()> {
    let recipe = load_recipe(&args.recipe)?;
    let report = evaluate_classifier(&recipe, &args.model)?;
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
