//! Data-parallel `braid train` under `mpirun -np 2` (issue 22): the same losses per step
//! as one process with the same global batch (a HAPT CNN recipe and a small `align`
//! recipe whose answers differ in length, so shards hold different token counts), the
//! same test accuracy; a killed rank stops the job, and `--resume` continues from the last
//! complete checkpoint with two processes or one. Needs the `mpi` feature and Open MPI
//! (`scripts/test.sh` installs it); the data from `braid fetch hapt easy-vqa` (skipped
//! without it unless BRAID_REQUIRE_ASSETS=1).
#![cfg(feature = "mpi")]
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{braid, fetched, root};

/// `mpirun -np N braid ARGS` (one thread per process, as on 2 cores), whatever its outcome.
fn mpirun(n: usize, args: &[&str]) -> Output {
    mpirun_command(n, &[], args).output().unwrap()
}

/// `mpirun -np N` with `env` (`NAME=VALUE`) set in every rank, running `braid ARGS`.
fn mpirun_command(n: usize, env: &[&str], args: &[&str]) -> Command {
    let mut cmd = Command::new("mpirun");
    cmd.args(["--allow-run-as-root", "--oversubscribe", "-np", &n.to_string()])
        .args(["-x", "RAYON_NUM_THREADS=1"]);
    for kv in env {
        cmd.args(["-x", kv]);
    }
    cmd.arg(env!("CARGO_BIN_EXE_braid")).args(args).current_dir(root()).stdin(Stdio::null());
    cmd
}

fn ok(out: Output, what: &str) -> Output {
    assert!(out.status.success(), "{what}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

/// The training loss of every logged step of a run.
fn losses(run: &Path) -> BTreeMap<usize, f64> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| r["split"] == "train")
        .map(|r| (r["step"].as_u64().unwrap() as usize, r["loss"].as_f64().unwrap()))
        .collect()
}

fn assert_same_losses(one: &Path, two: &Path, steps: usize) {
    let (a, b) = (losses(one), losses(two));
    assert_eq!(a.len(), steps, "{a:?}");
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (step, la) in &a {
        let lb = b[step];
        assert!((la - lb).abs() <= 1e-5, "step {step}: one process {la}, two {lb}");
    }
}

/// HAPT's CNN recipe, cut to `steps` steps, every step logged.
fn hapt_recipe(dir: &Path, name: &str, steps: usize, checkpoint_every: usize) -> PathBuf {
    let text = std::fs::read_to_string(root().join("recipes/hapt/cnn.toml")).unwrap();
    let text = text
        .replace("epochs = 20", &format!("max_steps = {steps}"))
        .replace("log_every = 10", "log_every = 1")
        .replace("eval_every = 100", "eval_every = 0")
        .replace("checkpoint_every = 100", &format!("checkpoint_every = {checkpoint_every}"));
    assert!(text.contains("max_steps") && text.contains("log_every = 1"), "{text}");
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn two_processes_train_the_hapt_cnn_as_one_does() {
    if !fetched("hapt") {
        eprintln!("skipping: run `braid fetch hapt`");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let recipe = hapt_recipe(tmp.path(), "cnn.toml", 12, 6);
    let (one, two) = (tmp.path().join("one"), tmp.path().join("two"));
    let a = braid(&["train", s(&recipe), "--quiet", "--out-dir", s(&one)]);
    let b = ok(mpirun(2, &["train", s(&recipe), "--quiet", "--out-dir", s(&two)]), "mpirun");
    assert!(String::from_utf8_lossy(&b.stderr).contains("data-parallel over 2 processes"));
    assert_same_losses(&one, &two, 12);
    let line = |o: &Output| -> serde_json::Value {
        serde_json::from_str(String::from_utf8_lossy(&o.stdout).lines().last().unwrap()).unwrap()
    };
    assert_eq!(line(&a)["accuracy"], line(&b)["accuracy"]);
    // Rank 0 alone wrote the run: one metrics file, one set of checkpoints, the model.
    assert!(two.join("model/pipeline.toml").is_file() && two.join("checkpoints/latest").is_file());
    let metrics = std::fs::read_to_string(two.join("metrics.jsonl")).unwrap();
    assert!(metrics.contains("allreduce_s_per_step"), "{metrics}");

    // Gradient accumulation composes: micro-batches of 48 (24 per rank), two per step.
    let text = std::fs::read_to_string(hapt_recipe(tmp.path(), "accum.toml", 6, 6)).unwrap();
    let accum = tmp.path().join("accum.toml");
    std::fs::write(&accum, text.replace("batch_size = 64", "batch_size = 48\ngrad_accum = 2"))
        .unwrap();
    let (one, two) = (tmp.path().join("accum-one"), tmp.path().join("accum-two"));
    braid(&["train", s(&accum), "--quiet", "--out-dir", s(&one)]);
    ok(mpirun(2, &["train", s(&accum), "--quiet", "--out-dir", s(&two)]), "mpirun accum");
    assert_same_losses(&one, &two, 6);
}

/// Eight easy-VQA captions whose answers differ in length.
fn captions(dir: &Path) -> PathBuf {
    let images = braid_hub::resolve_model("easy-vqa").unwrap().join("test/images");
    let answers = [
        "a shape",
        "a red circle in the middle of a white image",
        "blue",
        "a small green triangle",
    ];
    let samples: Vec<serde_json::Value> = (0..8)
        .map(|i| {
            serde_json::json!({"id": format!("img{i}_caption"), "image": images.join(format!("{i}.png")),
                "conversations": [{"from": "human", "value": "<image>\ndescribe the image."},
                                  {"from": "gpt", "value": answers[i % answers.len()]}]})
        })
        .collect();
    let path = dir.join("captions.json");
    std::fs::write(&path, serde_json::to_string(&samples).unwrap()).unwrap();
    path
}

#[test]
fn two_processes_align_a_projector_as_one_does_with_token_weighted_shards() {
    if !fetched("easy-vqa") {
        eprintln!("skipping: run `braid fetch easy-vqa`");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let data = captions(tmp.path());
    let llm = root().join("fixtures/llm/qwen2_chat_tiny");
    let text = format!(
        "stage = \"align\"\nout_dir = \"unused\"\n[data]\npath = {data:?}\n[model]\nllm = {llm:?}\nprojector = {{ type = \"mlp\" }}\nencoder = {{ type = \"vit\", feature_layer = -1, pool = 2, vit = {{ hidden_size = 16, intermediate_size = 32, num_hidden_layers = 1, num_attention_heads = 2, image_size = 32, patch_size = 8 }} }}\n[train]\nmax_steps = 6\nbatch_size = 4\nlr = 1e-2\nlog_every = 1\n",
        data = s(&data),
        llm = s(&llm),
    );
    let recipe = tmp.path().join("align.toml");
    std::fs::write(&recipe, text).unwrap();
    let (one, two) = (tmp.path().join("one"), tmp.path().join("two"));
    braid(&["train", s(&recipe), "--quiet", "--out-dir", s(&one)]);
    ok(mpirun(2, &["train", s(&recipe), "--quiet", "--out-dir", s(&two)]), "mpirun align");
    assert_same_losses(&one, &two, 6);
}

/// Open MPI's ranks of this job's braid processes: (pid, rank).
fn ranks(recipe: &Path) -> Vec<(u32, usize)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if !String::from_utf8_lossy(&cmdline).contains(s(recipe)) {
            continue;
        }
        let env = std::fs::read(entry.path().join("environ")).unwrap_or_default();
        let rank = String::from_utf8_lossy(&env)
            .split('\0')
            .find_map(|kv| kv.strip_prefix("OMPI_COMM_WORLD_RANK=").map(str::to_string));
        if let Some(rank) = rank.and_then(|r| r.parse().ok()) {
            out.push((pid, rank));
        }
    }
    out
}

fn latest_step(run: &Path) -> Option<usize> {
    let latest = std::fs::read_to_string(run.join("checkpoints/latest")).ok()?;
    latest.trim().trim_start_matches("step-").parse().ok()
}

/// Starts `mpirun -np 2 braid train RECIPE` into `run` with `env` in every rank, waits for
/// a checkpoint at step `min_step` or later, and returns the job and rank 1's pid.
fn start_and_wait(
    recipe: &Path,
    run: &Path,
    env: &[&str],
    min_step: usize,
) -> (std::process::Child, u32) {
    let args = ["train", s(recipe), "--quiet", "--out-dir", s(run)];
    let mut job =
        mpirun_command(2, env, &args).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let t0 = Instant::now();
    while latest_step(run).is_none_or(|s| s < min_step) {
        assert!(t0.elapsed() < Duration::from_secs(120), "no checkpoint after 120 s");
        assert!(job.try_wait().unwrap().is_none(), "the job ended before a checkpoint");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (pid, _) = ranks(recipe).into_iter().find(|&(_, r)| r == 1).expect("rank 1 is running");
    (job, pid)
}

#[test]
fn a_killed_rank_stops_the_job_and_resume_continues_with_two_processes_or_one() {
    if !fetched("hapt") {
        eprintln!("skipping: run `braid fetch hapt`");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let recipe = hapt_recipe(tmp.path(), "kill.toml", 100_000, 5);
    let run = tmp.path().join("run");
    let (job, victim) = start_and_wait(&recipe, &run, &[], 10);
    let killed = Command::new("kill").args(["-9", &victim.to_string()]).status().unwrap();
    assert!(killed.success());
    let killed_at = Instant::now();
    let out = job.wait_with_output().unwrap();
    assert!(killed_at.elapsed() < Duration::from_secs(60), "the job hung after a rank died");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("rank 1") && err.contains("signal 9"), "{err}");

    // Resume from the last complete checkpoint, with two processes and with one.
    let at = latest_step(&run).unwrap();
    let copy = tmp.path().join("copy");
    let cp = Command::new("cp").args(["-r", s(&run), s(&copy)]).status().unwrap();
    assert!(cp.success());
    let text = std::fs::read_to_string(&recipe).unwrap();
    let cut = tmp.path().join("cut.toml");
    std::fs::write(&cut, text.replace("max_steps = 100000", &format!("max_steps = {}", at + 4)))
        .unwrap();
    let two =
        ok(mpirun(2, &["train", s(&cut), "--quiet", "--resume", "--out-dir", s(&run)]), "resume");
    let one = braid(&["train", s(&cut), "--quiet", "--resume", "--out-dir", s(&copy)]);
    for out in [&two, &one] {
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&format!("trained {} steps (resumed at {at})", at + 4)), "{err}");
    }
    // Both continued the very same run.
    let (a, b) = (losses(&run), losses(&copy));
    for step in at + 1..=at + 4 {
        assert!((a[&step] - b[&step]).abs() <= 1e-5, "step {step}: {} vs {}", a[&step], b[&step]);
    }
}

#[test]
fn a_stalled_rank_ends_the_job_after_the_timeout_and_unsplittable_stages_are_refused() {
    if !fetched("hapt") {
        eprintln!("skipping: run `braid fetch hapt`");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    // A rank stopped (not dead: the launcher does not notice) leaves rank 0 waiting in the
    // all-reduce; the watchdog ends it after BRAID_DIST_TIMEOUT seconds, with a message.
    let recipe = hapt_recipe(tmp.path(), "stall.toml", 100_000, 5);
    let run = tmp.path().join("run");
    let (job, victim) = start_and_wait(&recipe, &run, &["BRAID_DIST_TIMEOUT=3"], 1);
    let stopped = Command::new("kill").args(["-STOP", &victim.to_string()]).status().unwrap();
    assert!(stopped.success());
    let at = Instant::now();
    let out = job.wait_with_output().unwrap();
    let _ = Command::new("kill").args(["-9", &victim.to_string()]).status();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(at.elapsed() < Duration::from_secs(60), "the job hung: {err}");
    assert!(!out.status.success());
    assert!(err.contains("no answer from the other ranks") && err.contains("--resume"), "{err}");

    // Augmentation drawn per batch cannot be split: refused before training, by name.
    let text = std::fs::read_to_string(&recipe).unwrap();
    let augmented = tmp.path().join("augmented.toml");
    std::fs::write(
        &augmented,
        format!("{text}\n[augment]\nscale = 0.1\nmax_shift = 2\nseed = 1\n"),
    )
    .unwrap();
    let out =
        mpirun(2, &["train", s(&augmented), "--quiet", "--out-dir", s(&tmp.path().join("aug"))]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("augmentation is drawn per batch"), "{err}");
}
