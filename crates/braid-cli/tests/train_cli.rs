//! `braid train` and `braid eval` end to end: a small run on BasicMotions that is resumed
//! and evaluated, recipes that fail before training naming the field, and the committed
//! HAPT model's accuracy (issue 7). The datasets come from `braid fetch basicmotions hapt`;
//! without them these tests skip, unless BRAID_REQUIRE_ASSETS=1 (CI), which makes them fail.
#![allow(clippy::panic, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn dataset(name: &str) -> Option<PathBuf> {
    let home = braid_hub::home();
    let fetched = braid_hub::find(name).ok().filter(|e| braid_hub::is_fetched(e, &home));
    match fetched {
        Some(e) => Some(braid_hub::entry_dir(e, &home)),
        None if std::env::var("BRAID_REQUIRE_ASSETS").as_deref() == Ok("1") => {
            panic!("dataset {name} is not fetched")
        }
        None => {
            eprintln!("skipping: run `braid fetch {name}`");
            None
        }
    }
}

fn braid(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_braid")).args(args).current_dir(root()).output().unwrap()
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn json(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).unwrap()
}

fn recipe(dir: &Path, data: &Path, max_steps: usize) -> String {
    format!(
        "stage = \"classify\"\nout_dir = \"{out}\"\n[data]\npath = \"{train}\"\ntest_path = \"{test}\"\n\
         [model.encoder]\ntype = \"cnn\"\nchannels = 6\nwidths = [16, 32]\nkernel_size = 5\nstride = 2\n[model.head]\n\
         [train]\nmax_steps = {max_steps}\nbatch_size = 8\nlr = 3e-3\ncheckpoint_every = 10\neval_every = 10\nlog_every = 1\n",
        out = dir.join("run").display(),
        train = data.join("BasicMotions_TRAIN.ts").display(),
        test = data.join("BasicMotions_TEST.ts").display(),
    )
}

#[test]
fn trains_resumes_and_evaluates_a_recipe() {
    let Some(data) = dataset("basicmotions") else { return };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.toml");
    std::fs::write(&path, recipe(dir.path(), &data, 20)).unwrap();
    let p = path.to_str().unwrap();
    let first = json(&braid(&["train", p, "--quiet"]));
    assert_eq!(first["n"], 40);
    let again = braid(&["train", p, "--quiet"]);
    assert!(!again.status.success() && String::from_utf8_lossy(&again.stderr).contains("--resume"));
    std::fs::write(&path, recipe(dir.path(), &data, 30)).unwrap();
    let resumed = braid(&["train", p, "--resume", "--quiet"]);
    assert!(
        String::from_utf8_lossy(&resumed.stderr).contains("resumed at 20"),
        "{}",
        String::from_utf8_lossy(&resumed.stderr)
    );
    let model = dir.path().join("run/model");
    let eval = json(&braid(&["eval", p, "--model", model.to_str().unwrap()]));
    let acc = eval["accuracy"].as_f64().unwrap();
    assert!(eval["n"] == 40 && eval["macro_f1"].is_number() && acc > 0.5, "{eval}");
    for f in [
        "run/loss.png",
        "run/metrics.png",
        "run/metrics.jsonl",
        "run/confusion.png",
        "run/model/recipe.toml",
    ] {
        assert!(dir.path().join(f).is_file(), "{f}");
    }
}

#[test]
fn bad_recipes_fail_before_training_naming_the_field() {
    let Some(data) = dataset("basicmotions") else { return };
    let dir = tempfile::tempdir().unwrap();
    let good = recipe(dir.path(), &data, 5);
    let cases = [
        (good.replace("batch_size = 8", "batch_size = 8\nlearnig_rate = 1.0"), "learnig_rate"),
        (good.replace("BasicMotions_TRAIN.ts", "Missing_TRAIN.ts"), "data.path"),
        (good.replace("[model.head]\n", ""), "model.head"),
        (good.replace("\"classify\"", "\"instruct\""), "unknown field"),
        (good.replace("\"classify\"", "\"clasify\""), "unknown variant `clasify`"),
        (good.replace("widths = [16, 32]", "widths = [16, 32]\nwidht = 3"), "widht"),
    ];
    for (text, field) in cases {
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, text).unwrap();
        let out = braid(&["train", path.to_str().unwrap(), "--quiet"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(field), "{field}: {err}");
        assert!(!dir.path().join("run").exists(), "{field}: training started");
    }
}

#[test]
fn the_committed_hapt_model_reaches_93_percent_on_unseen_users() {
    if dataset("hapt").is_none() {
        return;
    }
    let out = json(&braid(&["eval", "models/hapt-imu/recipe.toml", "--model", "models/hapt-imu"]));
    let acc = out["accuracy"].as_f64().unwrap();
    assert!(acc >= 0.93 && out["n"].as_u64().unwrap() > 3000, "{out}");
}
