//! The training loop (nanoGPT's `train.py` in spirit: one loop, on one screen). A [`Task`]
//! says what a batch's loss is and how to evaluate; [`fit`] owns everything else: seeded
//! batches, gradient accumulation, clipping, AdamW with the cosine schedule, metrics, plots,
//! atomic checkpoints and resuming, and stopping on a non-finite loss.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use braid_core::{Error, Result};
use candle_core::{Tensor, Var};
use indicatif::{ProgressBar, ProgressStyle};

use crate::checkpoint::{
    self, CheckpointDir, TrainState, CONFIG_FILE, OPTIMIZER_FILE, WEIGHTS_FILE,
};
use crate::metrics::{read_records, MetricsLog, Record};
use crate::order::DataOrder;
use crate::{clip_grad_norm, plot, AdamW, GradAccumulator, Grads, TrainConfig};

/// What is trained and how its loss is computed.
pub trait Task {
    /// Training examples (the loop shuffles their indices each epoch).
    fn train_len(&self) -> usize;
    /// Mean loss over the training examples at `indices`, a scalar whose gradient reaches
    /// [`Self::trainable`]; `step` seeds anything random (augmentation).
    fn loss(&self, indices: &[usize], step: usize) -> Result<Tensor>;
    /// Held-out metrics by name (`loss`, `accuracy`, ...); empty without an eval set.
    fn evaluate(&self) -> Result<BTreeMap<String, f64>>;
    /// The variables this stage trains, under unique names (freezing is structural: what
    /// is not listed never changes). An error when the model lacks what the stage trains.
    fn trainable(&self) -> Result<Vec<(String, Var)>>;
}

/// Where and how a run is kept.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Run directory: `metrics.jsonl`, plots, `config.toml`, `checkpoints/`.
    pub dir: PathBuf,
    /// Continue from the newest complete checkpoint instead of starting afresh.
    pub resume: bool,
    /// The resolved configuration, saved in the run directory and beside each checkpoint.
    pub config_toml: String,
    /// Draw a progress bar on stderr.
    pub progress: bool,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSummary {
    /// Optimiser steps taken in total.
    pub steps: usize,
    /// The step the run resumed from (`None` for a fresh run).
    pub resumed_from: Option<usize>,
    /// Training loss of the last step.
    pub final_loss: f64,
    /// The last evaluation.
    pub eval: BTreeMap<String, f64>,
    /// The final checkpoint.
    pub checkpoint: PathBuf,
    /// Wall time of this invocation, seconds.
    pub seconds: f64,
    /// Training examples per second in this invocation.
    pub samples_per_s: f64,
}

/// Trains `task` as `cfg` says, keeping the run in `run.dir`.
pub fn fit(task: &dyn Task, cfg: &TrainConfig, run: &RunOptions) -> Result<RunSummary> {
    cfg.validate()?;
    let n = task.train_len();
    let vars = task.trainable()?;
    if n == 0 || vars.is_empty() {
        return Err(Error::Invalid(format!(
            "nothing to train: {n} training examples, {} trainable variables",
            vars.len()
        )));
    }
    let mut opt = AdamW::from_vars(vars.clone(), cfg.adamw());
    let (total, sched) = (cfg.total_steps(n), cfg.schedule(cfg.total_steps(n)));
    let ckpts = CheckpointDir::new(&run.dir);
    let mut state = start(&ckpts, run, &vars, &mut opt)?;
    let resumed_from = run.resume.then_some(state.step);
    let mut log = MetricsLog::open(&run.dir, state.step)?;
    let mut order = DataOrder::new(n, cfg.batch_size, cfg.seed);
    let bar = progress_bar(total, state.step, run.progress);
    let (t0, samples0) = (Instant::now(), state.samples);
    let (mut eval, mut last) = (BTreeMap::new(), ckpts.latest()?.unwrap_or_default());
    while state.step < total {
        opt.set_lr(sched.lr(state.step));
        let (mut grads, loss, seen) =
            accumulate(task, &vars, &mut order, &mut state, cfg.grad_accum)?;
        let norm = clip_grad_norm(
            &mut grads,
            if cfg.max_grad_norm > 0.0 { cfg.max_grad_norm } else { f64::INFINITY },
        )?;
        stop_if_not_finite(&[("loss", loss), ("gradient norm", norm)], state.step + 1, &last)?;
        opt.step(&grads)?;
        state.step += 1;
        state.samples += seen as u64;
        state.last_loss = Some(loss);
        let sps = (state.samples - samples0) as f64 / t0.elapsed().as_secs_f64().max(1e-9);
        let end = state.step == total;
        if end || state.step % cfg.log_every.max(1) == 0 {
            let values = [
                ("loss", loss),
                ("lr", opt.config().lr),
                ("grad_norm", norm),
                ("epoch", state.cursor.epoch as f64),
                ("samples_per_s", sps),
            ];
            log.write(&record(
                state.step,
                "train",
                values.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            ))?;
        }
        bar.set_position(state.step as u64);
        bar.set_message(format!("loss {loss:.4} · {sps:.1} samples/s"));
        if end || (cfg.eval_every > 0 && state.step % cfg.eval_every == 0) {
            eval = task.evaluate()?;
            log.write(&record(state.step, "eval", eval.clone()))?;
            plot::plot_run(&read_records(log.path())?, &run.dir)?;
        }
        if end || (cfg.checkpoint_every > 0 && state.step % cfg.checkpoint_every == 0) {
            last = save(&ckpts, &state, cfg.keep_checkpoints, &vars, &opt, &run.config_toml)?;
        }
    }
    bar.finish_and_clear();
    let seconds = t0.elapsed().as_secs_f64();
    let samples_per_s = (state.samples - samples0) as f64 / seconds.max(1e-9);
    Ok(RunSummary {
        steps: state.step,
        resumed_from,
        final_loss: state.last_loss.unwrap_or(f64::NAN),
        eval,
        checkpoint: last,
        seconds,
        samples_per_s,
    })
}

/// One optimiser step's worth of micro-batches: their mean gradient, mean loss and size.
fn accumulate(
    task: &dyn Task,
    vars: &[(String, Var)],
    order: &mut DataOrder,
    state: &mut TrainState,
    micro: usize,
) -> Result<(Grads, f64, usize)> {
    let mut acc = GradAccumulator::new();
    let (mut loss_sum, mut seen) = (0f64, 0);
    for _ in 0..micro {
        let idx = order.next(&mut state.cursor);
        let loss = task.loss(&idx, state.step)?;
        loss_sum += loss.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?;
        acc.add(&Grads::from_vars(vars.iter().map(|(n, v)| (n.as_str(), v)), &loss.backward()?))?;
        seen += idx.len();
    }
    Ok((acc.finish()?, loss_sum / micro as f64, seen))
}

/// A fresh state (refusing to overwrite an earlier run), or the newest checkpoint's.
fn start(
    ckpts: &CheckpointDir,
    run: &RunOptions,
    vars: &[(String, Var)],
    opt: &mut AdamW,
) -> Result<TrainState> {
    let latest = ckpts.latest()?;
    if !run.resume {
        if let Some(dir) = latest {
            return Err(Error::Invalid(format!("{} already holds checkpoints (newest {}); pass --resume to continue it or choose another output directory", run.dir.display(), dir.display())));
        }
        std::fs::create_dir_all(&run.dir).map_err(|e| Error::io(&run.dir, e))?;
        let path = run.dir.join(CONFIG_FILE);
        std::fs::write(&path, &run.config_toml).map_err(|e| Error::io(&path, e))?;
        return Ok(TrainState::default());
    }
    let dir = latest.ok_or_else(|| {
        Error::Invalid(format!("--resume: no complete checkpoint in {}", ckpts.path().display()))
    })?;
    checkpoint::load_vars(vars, &dir.join(WEIGHTS_FILE))?;
    opt.load_state(&dir.join(OPTIMIZER_FILE))?;
    checkpoint::read_state(&dir)
}

fn save(
    ckpts: &CheckpointDir,
    state: &TrainState,
    keep: usize,
    vars: &[(String, Var)],
    opt: &AdamW,
    config: &str,
) -> Result<PathBuf> {
    ckpts.save(state, keep, |dir| {
        checkpoint::save_vars(vars, &dir.join(WEIGHTS_FILE))?;
        opt.save_state(&dir.join(OPTIMIZER_FILE))?;
        std::fs::write(dir.join(CONFIG_FILE), config)
            .map_err(|e| Error::io(dir.join(CONFIG_FILE), e))
    })
}

fn stop_if_not_finite(values: &[(&str, f64)], step: usize, last: &Path) -> Result<()> {
    for (what, v) in values {
        if !v.is_finite() {
            let kept = if last.as_os_str().is_empty() {
                "no checkpoint was written yet".to_string()
            } else {
                format!("the last good checkpoint {} is kept", last.display())
            };
            return Err(Error::Invalid(format!("training stopped: the {what} is {v} at step {step}; {kept} (lower the learning rate or check the data, then --resume)")));
        }
    }
    Ok(())
}

fn record(step: usize, split: &str, values: BTreeMap<String, f64>) -> Record {
    Record { step, split: split.to_string(), values }
}

fn progress_bar(total: usize, done: usize, show: bool) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total as u64);
    let style = ProgressStyle::with_template(
        "{wide_bar} {pos}/{len} steps [{elapsed_precise} < {eta_precise}] {msg}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_position(done as u64);
    bar.reset_eta();
    bar
}
