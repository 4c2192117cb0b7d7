//! Fusion end to end through the binary: `braid data make hapt-fusion`, a short `fuse`
//! run, `braid eval` with `--drop`, `--noise` and `--robustness`, and the committed fusion
//! model scoring what its report says. Needs `braid fetch hapt`; without it these tests
//! skip, unless BRAID_REQUIRE_ASSETS=1 (CI), which makes them fail.
#![allow(clippy::panic, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn hapt_fetched() -> bool {
    let home = braid_hub::home();
    let ok = braid_hub::find("hapt").is_ok_and(|e| braid_hub::is_fetched(e, &home));
    if !ok && std::env::var("BRAID_REQUIRE_ASSETS").as_deref() == Ok("1") {
        panic!("dataset hapt is not fetched");
    }
    if !ok {
        eprintln!("skipping: run `braid fetch hapt`");
    }
    ok
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn braid(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_braid")).args(args).current_dir(root()).output().unwrap()
}

fn json(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).unwrap()
}

fn make_hapt(dir: &Path) -> PathBuf {
    let data = dir.join("hapt-fusion");
    let out = braid(&["data", "make", "hapt-fusion", "--out", data.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    data
}

#[test]
fn a_fuse_recipe_trains_and_evaluates_with_missing_and_noisy_inputs() {
    if !hapt_fetched() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = make_hapt(dir.path());
    let recipe = std::fs::read_to_string(root().join("recipes/fusion/hapt.toml")).unwrap();
    let recipe = recipe
        .replace(
            "out_dir = \"runs/fusion/hapt\"",
            &format!("out_dir = \"{}\"", dir.path().join("run").display()),
        )
        .replace(
            "path = \"../../runs/data/hapt-fusion\"",
            &format!("path = \"{}\"", data.display()),
        )
        .replace("type = \"early\"", "type = \"attention\"")
        .replace("epochs = 10", "max_steps = 40")
        .replace("widths = [32, 64, 64]", "widths = [8, 16]");
    let path = dir.path().join("r.toml");
    std::fs::write(&path, recipe).unwrap();
    let trained = json(&braid(&["train", path.to_str().unwrap(), "--quiet"]));
    assert_eq!(trained["n"], 3799);
    assert_eq!(trained["method"], "attention");
    assert!(trained["accuracy"].as_f64().unwrap() > 0.5, "{trained}");

    let model = dir.path().join("run/model");
    let (d, m) = (data.to_str().unwrap(), model.to_str().unwrap());
    let clean = json(&braid(&["eval", d, "--model", m]));
    assert_eq!(clean["accuracy"], trained["accuracy"]);
    let dropped = json(&braid(&["eval", d, "--model", m, "--drop", "gyro"]));
    assert_eq!(dropped["drop"], serde_json::json!(["gyro"]));
    let report = dir.path().join("report");
    let noisy = json(&braid(&[
        "eval",
        d,
        "--model",
        m,
        "--noise",
        "acc=4",
        "--robustness",
        "--out",
        report.to_str().unwrap(),
    ]));
    assert!(noisy["accuracy"].as_f64().unwrap() < clean["accuracy"].as_f64().unwrap(), "{noisy}");
    assert!(report.join("robustness.png").is_file() && report.join("eval.json").is_file());

    let bad = braid(&["eval", d, "--model", m, "--noise", "magnetometer=1"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("no input `magnetometer`"));
    let bad =
        braid(&["eval", "recipes/hapt/cnn.toml", "--model", "models/hapt-imu", "--drop", "gyro"]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("apply to fusion models"));
}

#[test]
fn the_committed_fusion_model_scores_what_its_report_says() {
    let model = root().join("models/fusion-hapt");
    if !model.is_dir() || !hapt_fetched() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = make_hapt(dir.path());
    let line = json(&braid(&["eval", data.to_str().unwrap(), "--model", model.to_str().unwrap()]));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(model.join("report/eval.json")).unwrap())
            .unwrap();
    assert_eq!(line["n"], 3799);
    assert_eq!(line["accuracy"], report["metrics"]["accuracy"], "{line}");
}
