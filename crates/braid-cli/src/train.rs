//! `braid train RECIPE.toml [--resume]` and `braid eval (RECIPE.toml | vqa | DATA.json | FUSION_DATA_DIR) --model DIR`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use braid_data::conversation::{ConversationDataset, ConversationOptions};
use braid_pipeline::{Pipeline, Weights};
use braid_train::recipe::{
    evaluate_classifier, evaluate_fusion, evaluate_vision, Corruption, Launch, Recipe,
};
use candle_core::{DType, Device};

/// Train a model as a recipe describes.
#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    /// The recipe (see `recipes/`).
    pub recipe: PathBuf,
    /// Continue the run in the recipe's `out_dir` from its newest complete checkpoint.
    #[arg(long)]
    pub resume: bool,
    /// Start afresh even though `out_dir` already holds something (its checkpoints are
    /// removed and its model replaced); without this or --resume that is refused.
    #[arg(long, conflicts_with = "resume")]
    pub overwrite: bool,
    /// Override the recipe's `out_dir`.
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
    /// No progress bar (logs still go to `metrics.jsonl`).
    #[arg(long)]
    pub quiet: bool,
}

/// Evaluate a trained model; prints one JSON line.
#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    /// What to score on: a recipe (its test data), `vqa` (easy-VQA's test questions, with
    /// --data), or a conversation file (`.json` / `.jsonl`: each sample's last answer,
    /// overall and per question type: `{"accuracy", "n", "by_type": {TYPE: {"accuracy",
    /// "n"}}}`).
    pub what: PathBuf,
    /// The model directory (`out_dir/model` of a run, or e.g. `models/hapt-imu`).
    #[arg(long)]
    pub model: PathBuf,
    /// `vqa` only: the easy-VQA directory (default: the fetched `easy-vqa`).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Score the first N test images (`vqa`) or samples (a conversation file) only.
    #[arg(long, default_value_t = 0)]
    pub limit: usize,
    /// A conversation file: score every K-th sample only (the 1st, the K+1-th, ...),
    /// a sample spread over a file ordered by user or voice; then --limit.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub every: u64,
    /// A conversation file: samples decoded together (continuous batching; each answer is
    /// the one it gets alone, up to float rounding). 1, or --trainable-weights: one at a time.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=256))]
    pub batch: u64,
    /// A conversation file: score only samples of this question type (the sample id after
    /// its last `_`: `activity` of `u22_r0_w17_activity`); before --every.
    #[arg(long = "type", value_name = "TYPE")]
    pub question_type: Option<String>,
    /// Where the report goes: `vqa` and conversation files, a JSON file with accuracy per
    /// answer type (`vqa`) or per question type (a conversation file: the sample id after
    /// its last `_`, `u22_r0_w17_activity` -> `activity`; `all` for ids without one)
    /// (default: none, stdout only); a classifier, a directory for `eval.json` and `confusion.png`,
    /// a contrastive model, one for `eval.json` (default: the recipe's `out_dir`). Never
    /// inside the model directory unless asked.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// `vqa` and conversation files: also write every answer and its truth here (JSON lines).
    #[arg(long)]
    pub answers: Option<PathBuf>,
    /// Decode through the trainable f32 body instead of the frozen quantized one (slower;
    /// to check the frozen answers against).
    #[arg(long)]
    pub trainable_weights: bool,
    /// Fusion models: score with this input missing (repeatable), e.g. `--drop gyro`.
    #[arg(long, value_name = "INPUT")]
    pub drop: Vec<String>,
    /// Fusion models: add Gaussian noise of LEVEL times each channel's training std to an
    /// input (repeatable), e.g. `--noise audio=1.0`.
    #[arg(long, value_name = "INPUT=LEVEL")]
    pub noise: Vec<String>,
    /// Fusion models: also sweep every input's noise level and its absence; writes
    /// robustness.json-style points into eval.json and robustness.png into --out.
    #[arg(long)]
    pub robustness: bool,
    /// Seed of the added noise.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// Reads, overrides and resolves a recipe; returns it with its text as written.
fn load(path: &Path, out_dir: Option<&PathBuf>) -> anyhow::Result<(Recipe, String)> {
    let text = std::fs::read_to_string(path).with_context(|| path.display().to_string())?;
    let mut recipe = Recipe::parse(&text, path)?;
    if let Some(dir) = out_dir {
        recipe.set_out_dir(dir.clone());
    }
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    recipe.resolve(dir).with_context(|| format!("recipe {}", path.display()))?;
    recipe.validate().with_context(|| format!("recipe {}", path.display()))?;
    Ok((recipe, text))
}

pub fn train(args: &TrainArgs) -> anyhow::Result<()> {
    braid_train::quiet_spinning();
    let Some(dist) = braid_train::dist::from_env()? else { return train_with(args, None) };
    // A rank other than 0 keeps what a run writes besides checkpoints (the model, reports)
    // in a private folder, removed after: rank 0 alone writes `out_dir`.
    let scratch = (dist.rank() != 0).then(|| {
        std::env::temp_dir().join(format!("braid-rank{}-{}-run", dist.rank(), std::process::id()))
    });
    if let Some(dir) = scratch.as_ref().filter(|d| d.exists()) {
        std::fs::remove_dir_all(dir).with_context(|| dir.display().to_string())?;
    }
    let result = train_with(args, Some((dist.clone(), scratch.clone())));
    if let Some(dir) = scratch {
        let _ = std::fs::remove_dir_all(dir);
    }
    if let Err(e) = result {
        // The other ranks may be waiting for this one in a collective: stop them all.
        eprintln!("Error: rank {} of {}: {e:#}", dist.rank(), dist.size());
        dist.abort(1);
    }
    Ok(())
}

fn train_with(
    args: &TrainArgs,
    dist: Option<(braid_train::dist::Shared, Option<PathBuf>)>,
) -> anyhow::Result<()> {
    let (mut recipe, written) = load(&args.recipe, args.out_dir.as_ref())?;
    let main = dist.as_ref().is_none_or(|(d, _)| d.rank() == 0);
    if let Some((d, _)) = &dist {
        if main {
            eprintln!(
                "data-parallel over {} processes ({}): global batch {}, {} per process",
                d.size(),
                d.engine(),
                recipe.train().batch_size,
                recipe.train().batch_size.div_ceil(d.size())
            );
        }
    }
    if let Some((_, Some(scratch))) = &dist {
        recipe.set_out_dir(scratch.clone());
    }
    let launch = Launch {
        resume: args.resume,
        overwrite: args.overwrite,
        progress: !args.quiet,
        written,
        resolved: recipe.to_toml()?,
        dist: dist.map(|(d, _)| d),
    };
    let trained = recipe.run(&launch)?;
    if !main {
        return Ok(());
    }
    let s = &trained.summary;
    eprintln!(
        "trained {} steps{} in {:.1} s ({:.2} samples/s); model: {}; metrics, plots: {}",
        s.steps,
        s.resumed_from.map(|r| format!(" (resumed at {r})")).unwrap_or_default(),
        s.seconds,
        s.samples_per_s,
        trained.model_dir.display(),
        recipe.out_dir().display()
    );
    println!("{}", trained.report);
    Ok(())
}

/// Writes `lines` as JSON lines to `path`.
fn write_answers(path: &Path, lines: Vec<serde_json::Value>) -> anyhow::Result<()> {
    let lines: Vec<String> = lines.iter().map(serde_json::Value::to_string).collect();
    std::fs::write(path, lines.join("\n") + "\n").with_context(|| path.display().to_string())
}

/// The model as evaluation runs it: frozen (quantized, fused, LoRA beside), or the
/// trainable f32 body with `--trainable-weights`.
fn open_model(args: &EvalArgs) -> anyhow::Result<Pipeline> {
    let weights = if args.trainable_weights {
        Weights::Trainable(DType::F32)
    } else {
        Weights::Frozen { dequantize: false }
    };
    Pipeline::open(&args.model, weights, &Device::Cpu)
        .with_context(|| format!("loading {}", args.model.display()))
}

fn eval_vqa(args: &EvalArgs) -> anyhow::Result<()> {
    let data = match &args.data {
        Some(d) => d.clone(),
        None => braid_hub::resolve_model("easy-vqa")?,
    };
    if !data.is_dir() {
        bail!(
            "easy-VQA data not found at {} (run `braid fetch easy-vqa` or pass --data)",
            data.display()
        );
    }
    let pipeline = open_model(args)?;
    let report = braid_pipeline::evaluate_vqa(
        &pipeline,
        &data,
        args.limit,
        std::io::stderr().is_terminal(),
    )?;
    println!(
        "{}",
        serde_json::json!({"accuracy": report.accuracy, "n": report.n, "per_type": report.per_type})
    );
    if let Some(path) = &args.out {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| path.display().to_string())?;
    }
    if let Some(path) = &args.answers {
        write_answers(
            path,
            report.answers.iter().map(serde_json::to_value).collect::<Result<_, _>>()?,
        )?;
    }
    Ok(())
}

fn eval_conversations(args: &EvalArgs) -> anyhow::Result<()> {
    let mut data = ConversationDataset::open(&args.what, &ConversationOptions::default())?;
    if let Some(t) = &args.question_type {
        data.samples.retain(|s| braid_pipeline::question_type(&s.id) == t);
        if data.samples.is_empty() {
            bail!("{}: no sample of question type `{t}`", args.what.display());
        }
    }
    let every = usize::try_from(args.every).unwrap_or(usize::MAX);
    data.samples = data.samples.into_iter().step_by(every).collect();
    let pipeline = open_model(args)?;
    let batch = args.batch as usize;
    let report = braid_pipeline::evaluate_conversations(
        &pipeline,
        &data,
        args.limit,
        batch,
        std::io::stderr().is_terminal(),
    )?;
    println!("{}", serde_json::to_string(&report)?);
    if let Some(path) = &args.out {
        std::fs::write(path, serde_json::to_string_pretty(&report)? + "\n")
            .with_context(|| path.display().to_string())?;
    }
    if let Some(path) = &args.answers {
        write_answers(
            path,
            report.answers.iter().map(serde_json::to_value).collect::<Result<_, _>>()?,
        )?;
    }
    Ok(())
}

fn eval_fusion(args: &EvalArgs, data: &Path) -> anyhow::Result<()> {
    let corruption = Corruption {
        drop: args.drop.clone(),
        noise: args.noise.iter().map(|n| Corruption::parse_noise(n)).collect::<Result<_, _>>()?,
        seed: args.seed,
    };
    if let Some(out) = &args.out {
        std::fs::create_dir_all(out).with_context(|| out.display().to_string())?;
    }
    let report =
        evaluate_fusion(data, &args.model, args.out.as_deref(), &corruption, args.robustness)?;
    println!("{}", report.line());
    if let Some(points) = &report.robustness {
        for p in points {
            eprintln!(
                "{:>8} {:<12} accuracy {:.4}",
                p.input,
                p.noise.map_or("missing".to_string(), |l| format!("noise {l}")),
                p.accuracy
            );
        }
    }
    Ok(())
}

pub fn eval(args: &EvalArgs) -> anyhow::Result<()> {
    if args.what.join("fusion.json").is_file() {
        return eval_fusion(args, &args.what);
    }
    let corrupts = !args.drop.is_empty() || !args.noise.is_empty() || args.robustness;
    let not_fusion = || {
        anyhow::anyhow!(
            "--drop, --noise and --robustness apply to fusion models (a fusion dataset or a `fuse` recipe), not {:?}",
            args.what
        )
    };
    if corrupts && args.what.extension().is_none_or(|e| e != "toml") {
        return Err(not_fusion());
    }
    if args.what.extension().is_some_and(|e| e == "json" || e == "jsonl") {
        return eval_conversations(args);
    }
    if args.every != 1 || args.question_type.is_some() {
        bail!(
            "--every and --type apply to a conversation file (.json / .jsonl), not {:?}",
            args.what
        );
    }
    if args.what.as_os_str() == "vqa" {
        return eval_vqa(args);
    }
    let (recipe, _) = load(&args.what, None)?;
    if corrupts && !matches!(recipe, Recipe::Fuse(_)) {
        return Err(not_fusion());
    }
    match &recipe {
        Recipe::Classify(r) => {
            let out = args.out.clone().unwrap_or_else(|| r.out_dir.clone());
            std::fs::create_dir_all(&out).with_context(|| out.display().to_string())?;
            println!("{}", evaluate_classifier(r, &args.model, &out)?.line());
        }
        Recipe::Contrastive(r) => {
            let out = args.out.clone().unwrap_or_else(|| r.out_dir.clone());
            std::fs::create_dir_all(&out).with_context(|| out.display().to_string())?;
            println!("{}", serde_json::to_string(&evaluate_vision(r, &args.model, &out)?)?)
        }
        Recipe::Fuse(r) => eval_fusion(args, &r.data.path)?,
        Recipe::Diffusion(_) => bail!(
            "a diffusion recipe's model is judged by its samples: `braid draw --model DIR` \
             (its held-out denoising loss is in the run's metrics)"
        ),
        // The held-out file; else easy-VQA's test split; else the training file itself.
        Recipe::Align(r) | Recipe::Instruct(r) | Recipe::Preference(r) => {
            let (what, data) = match &r.data.eval_path {
                Some(path) => (path.clone(), None),
                None if r.data.path.join("answers.txt").is_file() => {
                    ("vqa".into(), Some(r.data.path.clone()))
                }
                None => (r.data.path.clone(), None),
            };
            eval(&EvalArgs {
                what,
                model: args.model.clone(),
                data,
                limit: args.limit,
                every: 1,
                batch: args.batch,
                question_type: None,
                out: args.out.clone(),
                answers: args.answers.clone(),
                trainable_weights: args.trainable_weights,
                drop: vec![],
                noise: vec![],
                robustness: false,
                seed: args.seed,
            })?
        }
    }
    Ok(())
}
