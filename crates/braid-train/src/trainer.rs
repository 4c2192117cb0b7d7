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
    /// [`Self::loss`] and what its mean is over (the examples by default; a stage whose
    /// loss is a mean over tokens counts them), so that shards of a batch trained on
    /// several processes combine into the whole batch's loss.
    fn weighted_loss(&self, indices: &[usize], step: usize) -> Result<(Tensor, f64)> {
        Ok((self.loss(indices, step)?, indices.len() as f64))
    }
    /// Why a batch of this task cannot be split across data-parallel processes (its loss
    /// couples the batch's examples, or it draws randomness per batch), or `None`.
    fn unsplittable(&self) -> Option<String> {
        None
    }
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
    /// Data-parallel training with the other processes of this collective (each reads its
    /// shard of every batch; rank 0 alone writes into `dir`); `None` for one process.
    pub dist: Option<crate::dist::Shared>,
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
    /// Training examples per second in this invocation (all processes together).
    pub samples_per_s: f64,
    /// Seconds this process spent in the gradient all-reduce (0 for one process).
    pub comm_seconds: f64,
}

/// Trains `task` as `cfg` says, keeping the run in `run.dir`. Under a collective
/// (`run.dist`) every process calls this with the same task and configuration: each
/// trains on its shard of every batch, the gradients are all-reduced, and rank 0 alone
/// evaluates and writes metrics, plots and checkpoints.
pub fn fit(task: &dyn Task, cfg: &TrainConfig, run: &RunOptions) -> Result<RunSummary> {
    cfg.validate()?;
    let n = task.train_len();
    // In name order: every process of a data-parallel job lays its gradients out alike
    // (a VarMap lists its variables in hash order, which differs between processes).
    let mut vars = task.trainable()?;
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    if n == 0 || vars.is_empty() {
        return Err(Error::Invalid(format!(
            "nothing to train: {n} training examples, {} trainable variables",
            vars.len()
        )));
    }
    let dist = run.dist.as_deref();
    if let (Some(d), Some(why)) = (dist, task.unsplittable()) {
        return Err(Error::Invalid(format!(
            "data-parallel training over {} processes: {why}; train this stage in one process",
            d.size()
        )));
    }
    let main = dist.is_none_or(|d| d.rank() == 0);
    let mut opt = AdamW::from_vars(vars.clone(), cfg.adamw());
    let (total, sched) = (cfg.total_steps(n), cfg.schedule(cfg.total_steps(n)));
    let ckpts = CheckpointDir::new(&run.dir);
    let mut state = match dist {
        Some(d) if d.rank() != 0 => start_follower(d, run, &vars, &mut opt)?,
        Some(d) => {
            let state = start(&ckpts, run, &vars, &mut opt)?;
            if run.resume {
                crate::dist::broadcast_dir(d, ckpts.latest()?.as_deref(), &run.dir)?;
            }
            state
        }
        None => start(&ckpts, run, &vars, &mut opt)?,
    };
    if let Some(d) = dist {
        crate::dist::broadcast_vars(d, &vars)?;
    }
    let resumed_from = run.resume.then_some(state.step);
    let mut log = if main { Some(MetricsLog::open(&run.dir, state.step)?) } else { None };
    let mut order = DataOrder::new(n, cfg.batch_size, cfg.seed);
    let bar = progress_bar(total, state.step, run.progress && main);
    let (t0, samples0) = (Instant::now(), state.samples);
    let (mut eval, mut last) = (BTreeMap::new(), ckpts.latest()?.unwrap_or_default());
    let mut comm = std::time::Duration::ZERO;
    while state.step < total {
        opt.set_lr(sched.lr(state.step));
        let (mut grads, loss, seen) =
            accumulate(task, &vars, &mut order, &mut state, cfg.grad_accum, dist, &mut comm)?;
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
        let Some(log) = log.as_mut() else { continue };
        if end || state.step % cfg.log_every.max(1) == 0 {
            let mut values = vec![
                ("loss", loss),
                ("lr", opt.config().lr),
                ("grad_norm", norm),
                ("epoch", state.cursor.epoch as f64),
                ("samples_per_s", sps),
            ];
            if dist.is_some() {
                values.push(("allreduce_s_per_step", comm.as_secs_f64() / state.step as f64));
            }
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
        comm_seconds: comm.as_secs_f64(),
    })
}

/// One optimiser step's worth of micro-batches: their mean gradient, mean loss and size.
/// Under a collective each micro-batch is split across the ranks and its gradient
/// all-reduced, so every rank ends with the gradient one process would compute.
fn accumulate(
    task: &dyn Task,
    vars: &[(String, Var)],
    order: &mut DataOrder,
    state: &mut TrainState,
    micro: usize,
    dist: Option<&dyn crate::dist::Collective>,
    comm: &mut std::time::Duration,
) -> Result<(Grads, f64, usize)> {
    let mut acc = GradAccumulator::new();
    let (mut loss_sum, mut seen) = (0f64, 0);
    for _ in 0..micro {
        let idx = order.next(&mut state.cursor);
        seen += idx.len();
        let Some(d) = dist else {
            let loss = task.loss(&idx, state.step)?;
            loss_sum += loss.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?;
            acc.add(&Grads::from_vars(
                vars.iter().map(|(n, v)| (n.as_str(), v)),
                &loss.backward()?,
            ))?;
            continue;
        };
        let mine = crate::dist::shard(&idx, d.rank(), d.size());
        let part = if mine.is_empty() {
            crate::dist::Partial { grads: Grads::default(), loss: 0.0, weight: 0.0 }
        } else {
            let (loss, weight) = task.weighted_loss(mine, state.step)?;
            let grads =
                Grads::from_vars(vars.iter().map(|(n, v)| (n.as_str(), v)), &loss.backward()?);
            let loss = loss.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?;
            crate::dist::Partial { grads, loss, weight }
        };
        let (grads, loss, spent) = crate::dist::reduce(d, vars, &part)?;
        *comm += spent;
        loss_sum += loss;
        acc.add(&grads)?;
    }
    Ok((acc.finish()?, loss_sum / micro as f64, seen))
}

/// A rank other than 0: nothing is written into the run directory; a resumed run loads
/// the checkpoint rank 0 sends (into a private temporary folder, removed after).
fn start_follower(
    coll: &dyn crate::dist::Collective,
    run: &RunOptions,
    vars: &[(String, Var)],
    opt: &mut AdamW,
) -> Result<TrainState> {
    if !run.resume {
        return Ok(TrainState::default());
    }
    // A folder of this process's own, created afresh (and only it removed after).
    let tmp = std::env::temp_dir().join(format!(
        "braid-rank{}-{}-checkpoint",
        coll.rank(),
        std::process::id()
    ));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    }
    let loaded = (|| {
        let dir = crate::dist::broadcast_dir(coll, None, &tmp)?;
        checkpoint::load_vars(vars, &dir.join(WEIGHTS_FILE))?;
        opt.load_state(&dir.join(OPTIMIZER_FILE))?;
        checkpoint::read_state(&dir)
    })();
    let _ = std::fs::remove_dir_all(&tmp);
    loaded
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
