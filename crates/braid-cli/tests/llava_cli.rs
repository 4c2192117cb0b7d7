//! A LLaVA conversation file trains a multimodal LLM through `braid train` with the
//! committed recipe `recipes/llava/tiny.toml`, on SmolLM2 and on a tiny Qwen2, and the
//! result opens in `braid chat` and `braid eval` (issue 13). The dataset is built from
//! easy-VQA images: one image per sample and two per sample. Needs `braid fetch easy-vqa
//! smollm2`; without them it skips, unless BRAID_REQUIRE_ASSETS=1 (CI), which makes it fail.
#![allow(clippy::panic, clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};

use braid_data::vqa::{EasyVqa, ExportOptions, Split};
use common::{braid, fetched, root, run};

/// `braid ARGS`, which must succeed -> its stdout.
fn ok(args: &[&str]) -> String {
    String::from_utf8_lossy(&braid(args).stdout).into_owned()
}

/// easy-VQA's first test images as a conversation file (one image per sample, two turns),
/// plus samples with two images each, in `dir`.
fn dataset(dir: &Path) -> PathBuf {
    let vqa = EasyVqa::open(&braid_hub::resolve_model("easy-vqa").unwrap(), Split::Test).unwrap();
    let one = vqa
        .write_conversations(dir, &ExportOptions { max_images: 4, turns: 2, ..Default::default() })
        .unwrap();
    let mut samples: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(&one).unwrap()).unwrap();
    let (a, b) = (vqa.image_path(0), vqa.image_path(1));
    samples.push(serde_json::json!({
        "id": "pair", "image": [a, b],
        "conversations": [{"from": "human", "value": "<image>\n<image>\nare the two shapes the same?"}, {"from": "gpt", "value": "no"}],
    }));
    let path = dir.join("train.json");
    std::fs::write(&path, serde_json::to_string(&samples).unwrap()).unwrap();
    path
}

/// The committed recipe, its data, run directory and (optionally) language model replaced.
fn recipe(dir: &Path, data: &Path, llm: Option<&str>) -> PathBuf {
    let mut text = std::fs::read_to_string(root().join("recipes/llava/tiny.toml")).unwrap();
    assert!(text.lines().count() <= 20, "the recipe stays small");
    text = text.replace("\"data/train.json\"", &format!("{:?}", data.display().to_string()));
    text = text
        .replace("\"runs/llava-tiny\"", &format!("{:?}", dir.join("run").display().to_string()));
    if let Some(model) = llm {
        text = text.replace("\"smollm2\"", &format!("{model:?}"));
    }
    let path = dir.join("tiny.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn train_chat_eval(llm: Option<&str>) {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path());
    let r = recipe(dir.path(), &data, llm);
    let trained: serde_json::Value =
        serde_json::from_str(ok(&["train", r.to_str().unwrap(), "--quiet"]).trim()).unwrap();
    assert!(trained["final_loss"].as_f64().unwrap().is_finite(), "{trained}");
    let model = dir.path().join("run/model");
    for f in [
        "pipeline.toml",
        "encoder.image.safetensors",
        "projector.image.safetensors",
        "lora.safetensors",
        "recipe.toml",
    ] {
        assert!(model.join(f).is_file(), "{f}");
    }
    assert!(
        dir.path().join("run/recipe.toml").is_file()
            && dir.path().join("run/config.toml").is_file()
    );
    let m = model.to_str().unwrap();
    let image = braid_hub::resolve_model("easy-vqa").unwrap().join("test/images/0.png");
    ok(&[
        "chat",
        "--model",
        m,
        "--image",
        image.to_str().unwrap(),
        "--max-tokens",
        "3",
        "what color is the shape?",
    ]);
    let eval: serde_json::Value = serde_json::from_str(
        ok(&["eval", data.to_str().unwrap(), "--model", m, "--limit", "6"]).trim(),
    )
    .unwrap();
    assert_eq!(eval["n"].as_u64(), Some(6), "{eval}");
    assert!(eval["accuracy"].is_number(), "{eval}");
}

#[test]
fn a_llava_json_dataset_trains_smollm2_and_the_model_chats_and_evaluates() {
    if !["easy-vqa", "smollm2"].iter().all(|n| fetched(n)) {
        eprintln!("skipping: run `braid fetch easy-vqa smollm2`");
        return;
    }
    train_chat_eval(None);
}

/// A language model named by path used to be written into `pipeline.toml` as an absolute
/// path: a model directory moved together with its base model no longer opened. It is now
/// kept relative to the model directory.
#[test]
fn a_model_trained_on_a_base_model_named_by_path_moves_with_it() {
    if !fetched("easy-vqa") {
        eprintln!("skipping: run `braid fetch easy-vqa`");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let qwen = dir.path().join("llm/qwen2_chat_tiny");
    std::fs::create_dir_all(&qwen).unwrap();
    for f in std::fs::read_dir(root().join("fixtures/llm/qwen2_chat_tiny")).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, qwen.join(f.file_name().unwrap())).unwrap();
    }
    let data = dataset(dir.path());
    let r = recipe(dir.path(), &data, Some(qwen.to_str().unwrap()));
    ok(&["train", r.to_str().unwrap(), "--quiet"]);
    let toml = std::fs::read_to_string(dir.path().join("run/model/pipeline.toml")).unwrap();
    assert!(toml.contains("llm = \"../../llm/qwen2_chat_tiny\""), "{toml}");
    let moved = dir.path().join("moved");
    std::fs::create_dir(&moved).unwrap();
    for d in ["run", "llm"] {
        std::fs::rename(dir.path().join(d), moved.join(d)).unwrap();
    }
    let image = braid_hub::resolve_model("easy-vqa").unwrap().join("test/images/0.png");
    let model = moved.join("run/model");
    ok(&[
        "chat",
        "--model",
        model.to_str().unwrap(),
        "--image",
        image.to_str().unwrap(),
        "--max-tokens",
        "2",
        "what color is the shape?",
    ]);
}

#[test]
fn the_same_recipe_trains_a_tiny_qwen2() {
    if !fetched("easy-vqa") {
        eprintln!("skipping: run `braid fetch easy-vqa`");
        return;
    }
    let qwen = root().join("fixtures/llm/qwen2_chat_tiny");
    train_chat_eval(Some(qwen.to_str().unwrap()));
}

#[test]
fn the_committed_recipe_data_is_a_valid_conversation_file() {
    let ds = braid_data::conversation::ConversationDataset::open(
        root().join("recipes/llava/data/train.json"),
        &Default::default(),
    )
    .unwrap();
    assert_eq!(ds.len(), 10);
    assert!(ds.iter().any(|s| s.media.len() == 2));
}

/// `braid ARGS` fails with a one-line error containing every one of `want`.
fn fails_naming(args: &[&str], want: &[&str]) {
    let out = run(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "braid {args:?} succeeded");
    let line = err.lines().find(|l| l.starts_with("error:")).unwrap_or_default();
    assert!(
        want.iter().all(|w| line.contains(w)),
        "braid {args:?}: want {want:?} in one line, got: {err}"
    );
}

#[test]
fn bad_conversation_files_and_recipes_fail_before_training_naming_the_sample_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let image = root().join("recipes/llava/data/0.png");
    let good = serde_json::json!({"id": "s1", "image": image, "conversations": [{"from": "human", "value": "<image>\nwhat color?"}, {"from": "gpt", "value": "blue"}]});
    let with = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut s = good.clone();
        f(&mut s);
        serde_json::to_string(&[s]).unwrap()
    };
    let cases: Vec<(String, Vec<&str>)> = vec![
        (with(&|s| s["image"] = "missing.png".into()), vec!["\"s1\"", "image", "missing.png"]),
        (
            with(&|s| s["conversations"][0]["value"] = "<image>\n<image>\nwhat color?".into()),
            vec!["\"s1\"", "<image>"],
        ),
        (with(&|s| s["imgae"] = "0.png".into()), vec!["\"s1\"", "imgae"]),
        ("[]".to_string(), vec!["data.json", "no samples"]),
    ];
    let qwen = root().join("fixtures/llm/qwen2_chat_tiny");
    for (text, want) in cases {
        let data = dir.path().join("data.json");
        std::fs::write(&data, &text).unwrap();
        let r = recipe(dir.path(), &data, Some(qwen.to_str().unwrap()));
        fails_naming(&["train", r.to_str().unwrap(), "--quiet"], &want);
        assert!(!dir.path().join("run").exists(), "{want:?}: training started");
    }
    let r = dir.path().join("stage.toml");
    std::fs::write(&r, "stage = \"finetune\"\nout_dir = \"x\"\n").unwrap();
    fails_naming(
        &["train", r.to_str().unwrap()],
        &["stage.toml", "unknown variant `finetune`", "instruct"],
    );
}

#[test]
fn a_model_directory_with_a_missing_or_corrupt_weights_file_names_the_file() {
    if !fetched("smollm2") {
        eprintln!("skipping: run `braid fetch smollm2`");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // The model's files (its report/ folder is a record the model does not need).
    for f in std::fs::read_dir(root().join("models/easyvqa")).unwrap() {
        let f = f.unwrap().path();
        if f.is_file() {
            std::fs::copy(&f, dir.path().join(f.file_name().unwrap())).unwrap();
        }
    }
    let m = dir.path().to_str().unwrap();
    let image = root().join("recipes/llava/data/0.png");
    let chat = [
        "chat",
        "--model",
        m,
        "--image",
        image.to_str().unwrap(),
        "--max-tokens",
        "2",
        "what color?",
    ];
    std::fs::write(dir.path().join("projector.image.safetensors"), b"not a safetensors file")
        .unwrap();
    fails_naming(&chat, &["projector.image.safetensors"]);
    std::fs::remove_file(dir.path().join("projector.image.safetensors")).unwrap();
    fails_naming(&chat, &["projector.image.safetensors"]);
    std::fs::write(dir.path().join("pipeline.toml"), "llm = \"smollm2\"\nhead_size = 3\n").unwrap();
    fails_naming(&chat, &["pipeline.toml", "head_size"]);
}

/// `stage = "preference"` (DPO) from a trained model: the reference is that model, so the
/// first step's loss is ln 2 exactly; a sample without `rejected` is refused by name.
#[test]
fn a_preference_stage_tunes_a_trained_model_with_dpo() {
    if !["easy-vqa", "smollm2"].iter().all(|n| fetched(n)) {
        eprintln!("skipping: run `braid fetch easy-vqa smollm2`");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path());
    ok(&["train", recipe(dir.path(), &data, None).to_str().unwrap(), "--quiet"]);
    let mut samples: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(&data).unwrap()).unwrap();
    for s in &mut samples {
        s["rejected"] = serde_json::json!("purple");
    }
    let pref = dir.path().join("pref.json");
    std::fs::write(&pref, serde_json::to_string(&samples).unwrap()).unwrap();
    let recipe = |data: &Path| {
        let text = format!(
            "stage = \"preference\"\nout_dir = {:?}\n[data]\npath = {:?}\n[model]\nllm = \"smollm2\"\n\
             init = {:?}\n[model.lora]\nrank = 4\n[preference]\nbeta = 0.1\n\
             [train]\nmax_steps = 2\nbatch_size = 2\nlr = 1e-3\nlog_every = 1\n",
            dir.path().join("dpo").display().to_string(),
            data.display().to_string(),
            dir.path().join("run/model").display().to_string(),
        );
        let path = dir.path().join("dpo.toml");
        std::fs::write(&path, text).unwrap();
        path
    };
    ok(&["train", recipe(&pref).to_str().unwrap(), "--quiet"]);
    let metrics = std::fs::read_to_string(dir.path().join("dpo/metrics.jsonl")).unwrap();
    let first: serde_json::Value = serde_json::from_str(metrics.lines().next().unwrap()).unwrap();
    let loss = first["loss"].as_f64().unwrap();
    assert!((loss - std::f64::consts::LN_2).abs() < 1e-5, "first DPO loss {loss}: {first}");
    assert!(dir.path().join("dpo/model/lora.safetensors").is_file());
    // A sample without `rejected`.
    samples[1].as_object_mut().unwrap().remove("rejected");
    std::fs::write(&pref, serde_json::to_string(&samples).unwrap()).unwrap();
    let out = run(&["train", recipe(&pref).to_str().unwrap(), "--quiet", "--overwrite"]);
    let err = String::from_utf8_lossy(&out.stderr);
    let id =
        samples[1]["id"].as_str().map(String::from).unwrap_or_else(|| samples[1]["id"].to_string());
    assert!(!out.status.success() && err.contains("rejected") && err.contains(&id), "{err}");
}
