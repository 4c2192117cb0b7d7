//! The training loop end to end on a tiny softmax regression: it learns, logs and plots;
//! a run resumed from a checkpoint continues with exactly the losses of an uninterrupted
//! one; a non-finite loss stops it naming the step and keeps the last good checkpoint; and
//! a run killed with SIGKILL while writing a checkpoint leaves the previous one loadable.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use braid_core::{Error, Result};
use braid_nn::cross_entropy;
use braid_train::checkpoint::{self, CheckpointDir};
use braid_train::metrics::{read_records, METRICS_FILE};
use braid_train::{fit, RunOptions, Task, TrainConfig};
use candle_core::{DType, Device, Tensor, Var};

/// Softmax regression on 64 fixed points in 4-d, 3 classes given by a fixed projection.
struct Toy {
    w: Var,
    ballast: Option<Var>,
    x: Tensor,
    y: Vec<i64>,
    fail_at: Option<(usize, bool)>,
}

impl Toy {
    fn new(ballast: usize) -> Self {
        let dev = Device::Cpu;
        let x = Tensor::new(
            (0..256).map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0).collect::<Vec<_>>(),
            &dev,
        )
        .unwrap()
        .reshape((64, 4))
        .unwrap();
        let proj = Tensor::new(
            &[[1f32, -1.0, 0.5], [0.5, 1.0, -1.0], [-1.0, 0.5, 1.0], [0.2, 0.3, -0.4]],
            &dev,
        )
        .unwrap();
        let y = x
            .matmul(&proj)
            .unwrap()
            .argmax(1)
            .unwrap()
            .to_vec1::<u32>()
            .unwrap()
            .into_iter()
            .map(i64::from)
            .collect();
        let w = Var::from_tensor(&Tensor::zeros((4, 3), DType::F32, &dev).unwrap()).unwrap();
        let ballast = (ballast > 0).then(|| Var::zeros(ballast, DType::F32, &dev).unwrap());
        Self { w, ballast, x, y, fail_at: None }
    }
}

impl Task for Toy {
    fn train_len(&self) -> usize {
        self.y.len()
    }

    fn loss(&self, idx: &[usize], step: usize) -> Result<Tensor> {
        match self.fail_at {
            Some((s, true)) if s == step => return Ok(Tensor::new(f32::NAN, &Device::Cpu)?),
            Some((s, false)) if s == step => return Err(Error::Invalid("interrupted".into())),
            _ => {}
        }
        let sel = Tensor::new(idx.iter().map(|&i| i as u32).collect::<Vec<_>>(), &Device::Cpu)?;
        let y = Tensor::new(idx.iter().map(|&i| self.y[i]).collect::<Vec<_>>(), &Device::Cpu)?;
        let mut loss =
            cross_entropy(&self.x.index_select(&sel, 0)?.matmul(self.w.as_tensor())?, &y, None)?;
        if let Some(b) = &self.ballast {
            loss = (loss + b.as_tensor().sum_all()?.affine(0.0, 0.0)?)?;
        }
        Ok(loss)
    }

    fn evaluate(&self) -> Result<BTreeMap<String, f64>> {
        let pred = self.x.matmul(self.w.as_tensor())?.argmax(1)?.to_vec1::<u32>()?;
        let correct = pred.iter().zip(&self.y).filter(|(p, y)| i64::from(**p) == **y).count();
        Ok(BTreeMap::from([("accuracy".into(), correct as f64 / self.y.len() as f64)]))
    }

    fn trainable(&self) -> Result<Vec<(String, Var)>> {
        let mut v = vec![("w".to_string(), self.w.clone())];
        v.extend(self.ballast.iter().map(|b| ("ballast".to_string(), b.clone())));
        Ok(v)
    }
}

fn cfg() -> TrainConfig {
    TrainConfig {
        epochs: 6,
        batch_size: 16,
        grad_accum: 2,
        lr: 0.1,
        warmup_steps: 2,
        eval_every: 4,
        checkpoint_every: 3,
        log_every: 1,
        seed: 3,
        ..Default::default()
    }
}

fn opts(dir: &Path, resume: bool) -> RunOptions {
    RunOptions {
        dir: dir.to_path_buf(),
        resume,
        config_toml: "lr = 0.1\n".into(),
        progress: false,
        dist: None,
    }
}

fn train_losses(dir: &Path) -> Vec<(usize, f64)> {
    read_records(&dir.join(METRICS_FILE))
        .unwrap()
        .iter()
        .filter(|r| r.split == "train")
        .map(|r| (r.step, r.values["loss"]))
        .collect()
}

#[test]
fn learns_logs_plots_and_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let summary = fit(&Toy::new(0), &cfg(), &opts(dir.path(), false)).unwrap();
    assert_eq!(summary.steps, 12);
    assert!(summary.eval["accuracy"] >= 0.9, "{summary:?}");
    let losses = train_losses(dir.path());
    assert_eq!(losses.len(), 12);
    assert!(losses[11].1 < 0.5 * losses[0].1, "{losses:?}");
    for f in ["loss.png", "metrics.png", "config.toml"] {
        assert!(dir.path().join(f).is_file(), "{f}");
    }
    assert!(
        summary.checkpoint.join(checkpoint::CONFIG_FILE).is_file(),
        "config beside the checkpoint"
    );
    let again = fit(&Toy::new(0), &cfg(), &opts(dir.path(), false)).unwrap_err().to_string();
    assert!(again.contains("--resume"), "{again}");
}

#[test]
fn a_resumed_run_continues_with_the_same_losses() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    fit(&Toy::new(0), &cfg(), &opts(a.path(), false)).unwrap();
    let mut broken = Toy::new(0);
    broken.fail_at = Some((7, false));
    assert!(fit(&broken, &cfg(), &opts(b.path(), false)).is_err());
    let resumed = fit(&Toy::new(0), &cfg(), &opts(b.path(), true)).unwrap();
    assert_eq!(resumed.resumed_from, Some(6));
    assert_eq!(train_losses(a.path()), train_losses(b.path()), "bit-identical continuation");
}

#[test]
fn a_nan_loss_stops_naming_the_step_and_keeps_the_last_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let mut toy = Toy::new(0);
    toy.fail_at = Some((4, true));
    let e = fit(&toy, &cfg(), &opts(dir.path(), false)).unwrap_err().to_string();
    assert!(e.contains("loss is NaN at step 5") && e.contains("step-0000003"), "{e}");
    let latest = CheckpointDir::new(dir.path()).latest().unwrap().unwrap();
    assert_eq!(checkpoint::read_state(&latest).unwrap().step, 3);
    let resumed = fit(&Toy::new(0), &cfg(), &opts(dir.path(), true)).unwrap();
    assert_eq!(resumed.steps, 12);
}

const CHILD: &str = "BRAID_TRAIN_LOOP_CHILD_DIR";
const BALLAST: usize = 6_000_000;

fn kill_cfg() -> TrainConfig {
    TrainConfig { checkpoint_every: 1, keep_checkpoints: 2, ..cfg() }
}

/// Run as a child process by the test below: trains with a checkpoint after every step,
/// each carrying ~72 MB so that writing one takes a while.
#[test]
fn child_training_run() {
    let Ok(dir) = std::env::var(CHILD) else { return };
    fit(&Toy::new(BALLAST), &kill_cfg(), &opts(Path::new(&dir), false)).unwrap();
}

#[test]
fn sigkill_during_a_checkpoint_write_leaves_the_previous_one_and_resume_continues() {
    let reference = tempfile::tempdir().unwrap();
    fit(&Toy::new(BALLAST), &kill_cfg(), &opts(reference.path(), false)).unwrap();
    let want = train_losses(reference.path());
    for attempt in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let ckpts = dir.path().join("checkpoints");
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "child_training_run", "--nocapture", "--test-threads=1"])
            .env(CHILD, dir.path())
            .spawn()
            .unwrap();
        // Wait until a checkpoint is being written after at least one complete one.
        let t0 = Instant::now();
        let mut caught = false;
        while t0.elapsed() < Duration::from_secs(60) {
            let partial = std::fs::read_dir(&ckpts)
                .map(|d| {
                    d.flatten().any(|e| {
                        e.file_name().to_string_lossy().ends_with(".tmp") && e.path().is_dir()
                    })
                })
                .unwrap_or(false);
            if partial && CheckpointDir::new(dir.path()).latest().unwrap().is_some() {
                child.kill().unwrap();
                caught = true;
                break;
            }
            if child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        child.wait().unwrap();
        let still_partial = std::fs::read_dir(&ckpts)
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().ends_with(".tmp"));
        if !(caught && still_partial) {
            eprintln!("attempt {attempt}: the kill missed the write window, retrying");
            continue;
        }
        let latest = CheckpointDir::new(dir.path()).latest().unwrap().unwrap();
        let step = checkpoint::read_state(&latest).unwrap().step;
        let toy = Toy::new(BALLAST);
        checkpoint::load_vars(&toy.trainable().unwrap(), &latest.join(checkpoint::WEIGHTS_FILE))
            .unwrap();
        let resumed = fit(&toy, &kill_cfg(), &opts(dir.path(), true)).unwrap();
        assert_eq!((resumed.resumed_from, resumed.steps), (Some(step), 12));
        let got = train_losses(dir.path());
        assert_eq!(got.len(), want.len(), "{got:?}");
        for ((s, l), (ws, wl)) in got.iter().zip(&want) {
            assert!(s == ws && (l - wl).abs() < 1e-6, "step {s}: {l} vs {wl}");
        }
        return;
    }
    panic!("never caught the child inside a checkpoint write");
}
