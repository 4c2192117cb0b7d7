//! The easy-VQA recipes end to end at smoke size (issue 8): the contrastive vision
//! encoder, the `align` stage, the `instruct` stage from it, `braid eval vqa` and
//! `braid chat --image` over two turns on the saved model. They need
//! `braid fetch easy-vqa minilm smollm2`; without them they skip, unless
//! BRAID_REQUIRE_ASSETS=1 (CI), which makes them fail.
#![allow(clippy::panic, clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{braid, fetched, root};

/// A committed smoke recipe with its run directories moved into `dir`.
fn recipe(dir: &Path, name: &str) -> String {
    let text = std::fs::read_to_string(root().join("recipes/easyvqa").join(name)).unwrap();
    let moved = text.replace("\"runs/", &format!("\"{}/", dir.display()));
    let path = dir.join(name);
    std::fs::write(&path, moved).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn vision_align_instruct_eval_and_chat_at_smoke_size() {
    if !["easy-vqa", "minilm", "smollm2"].iter().all(|n| fetched(n)) {
        eprintln!("skipping: run `braid fetch easy-vqa minilm smollm2`");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for name in ["vision_smoke.toml", "align_smoke.toml", "instruct_smoke.toml"] {
        braid(&["train", &recipe(dir.path(), name), "--quiet"]);
    }
    let model = dir.path().join("easyvqa-instruct-smoke/model");
    for f in [
        "pipeline.toml",
        "encoder.image.safetensors",
        "projector.image.safetensors",
        "lora.safetensors",
    ] {
        assert!(model.join(f).is_file(), "{f}");
    }
    let m = model.to_str().unwrap();
    let out = braid(&["eval", "vqa", "--model", m, "--limit", "1"]);
    let json: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).unwrap();
    assert!(json["n"].as_u64().unwrap() > 0 && json["accuracy"].is_number(), "{json}");
    chat_about_test_image_7(m, b"what color is the shape?\nis it a circle?\n");
}

/// `braid chat --model MODEL --image <easy-VQA test image 7>` fed `turns` (one question a
/// line) on stdin; fails unless it succeeds, and returns its output.
fn chat_about_test_image_7(model: &str, turns: &[u8]) -> Output {
    let image = braid_hub::entry_dir(braid_hub::find("easy-vqa").unwrap(), &braid_hub::home())
        .join("test/images/7.png");
    let mut chat = Command::new(env!("CARGO_BIN_EXE_braid"))
        .args(["chat", "--model", model, "--image", image.to_str().unwrap(), "--max-tokens", "4"])
        .current_dir(root())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    chat.stdin.take().unwrap().write_all(turns).unwrap();
    let out = chat.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    out
}

/// The committed model (`models/easyvqa`, trained by `recipes/easyvqa/{vision,align,
/// instruct}.toml`) loads from the clone without retraining, answers the question
/// about test image 7 (a green circle), answers a follow-up that only the first turn's
/// image can answer, and keeps its score on the questions of the first 20 test images
/// through `braid eval vqa` (88.4% when committed: colour 100%, shape 95.8%, yes/no 84.8%;
/// the issue asks 95% on the whole test set, which this model does not reach).
#[test]
fn committed_model_answers_and_follows_up_with_the_history() {
    if !["easy-vqa", "smollm2"].iter().all(|n| fetched(n)) {
        eprintln!("skipping: run `braid fetch easy-vqa smollm2`");
        return;
    }
    let out =
        chat_about_test_image_7("models/easyvqa", b"what color is the shape?\nwhat shape is it?\n");
    let text = String::from_utf8_lossy(&out.stdout).to_lowercase();
    let (green, circle) = (text.find("green"), text.rfind("circle"));
    assert!(green.is_some() && circle.is_some() && green < circle, "chat output: {text}");

    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("eval.json");
    let out = braid(&[
        "eval",
        "vqa",
        "--model",
        "models/easyvqa",
        "--limit",
        "20",
        "--out",
        report.to_str().unwrap(),
    ]);
    assert!(std::fs::read_to_string(&report).unwrap().contains("per_type"));
    let json: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).unwrap();
    let acc = json["accuracy"].as_f64().unwrap();
    assert!(acc >= 0.95 && json["n"].as_u64().unwrap() > 150, "{json}");
}
