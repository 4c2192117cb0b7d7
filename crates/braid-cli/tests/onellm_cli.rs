//! OneLLM's progressive alignment through `braid train` (issue 14): stage I aligns
//! images through a UPM projector, stage II starts from that model and adds an IMU slot
//! whose tokens go through the same shared experts, with image conversations mixed in.
//! The image encoder stays as stage I left it, the shared experts train on, and the
//! two-slot model evaluates on IMU conversations. A tiny Qwen2 (a committed fixture) is
//! the language model; easy-VQA gives the images (`braid fetch easy-vqa`; skipped
//! without it unless BRAID_REQUIRE_ASSETS=1).
#![allow(clippy::panic, clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};

use braid_core::checkpoint::{write_npy, Checkpoint, NpyArray, NpyData};
use common::{braid, fetched, root, run};

/// The UPM of both stages (tiny).
const UPM: &str = "{ type = \"upm\", experts = 2, layers = 1, width = 16, heads = 2, ffn_multiple_of = 8, queries = 3 }";

fn write(path: &Path, text: &str) -> PathBuf {
    std::fs::write(path, text).unwrap();
    path.to_path_buf()
}

/// Captions of four easy-VQA test images.
fn images(dir: &Path) -> PathBuf {
    let root = braid_hub::resolve_model("easy-vqa").unwrap().join("test/images");
    let samples: Vec<serde_json::Value> = (0..4)
        .map(|i| {
            serde_json::json!({"id": format!("img{i}_caption"), "image": root.join(format!("{i}.png")),
                "conversations": [{"from": "human", "value": "<image>\ndescribe the image."},
                                  {"from": "gpt", "value": "a shape"}]})
        })
        .collect();
    write(&dir.join("images.json"), &serde_json::to_string(&samples).unwrap())
}

/// Eight IMU windows [32, 6], half of them moving (large swings), with questions.
fn imu(dir: &Path) -> PathBuf {
    let samples: Vec<serde_json::Value> = (0..8)
        .map(|i| {
            let moving = i % 2 == 0;
            let data = (0..32 * 6)
                .map(|k| {
                    let (t, c) = ((k / 6) as f32, (k % 6) as f32);
                    let swing = if moving { 1.0 } else { 0.01 };
                    c * 0.1 + swing * (t * 0.7 + c + i as f32).sin()
                })
                .collect();
            let file = dir.join(format!("w{i}.npy"));
            write_npy(&file, &NpyArray { shape: vec![32, 6], data: NpyData::F32(data) }).unwrap();
            let answer = if moving { "moving" } else { "still" };
            serde_json::json!({"id": format!("w{i}_motion"), "imu": file,
                "conversations": [{"from": "human", "value": "<imu>\nis the person moving?"},
                                  {"from": "gpt", "value": answer}]})
        })
        .collect();
    write(&dir.join("imu.json"), &serde_json::to_string(&samples).unwrap())
}

fn qwen() -> String {
    root().join("fixtures/llm/qwen2_chat_tiny").display().to_string()
}

fn stage1(dir: &Path, data: &Path) -> PathBuf {
    let text = format!(
        "stage = \"align\"\nout_dir = {out:?}\n[data]\npath = {data:?}\n[model]\nllm = {llm:?}\nprojector = {UPM}\nencoder = {{ type = \"vit\", feature_layer = -1, pool = 2, vit = {{ hidden_size = 16, intermediate_size = 32, num_hidden_layers = 1, num_attention_heads = 2, image_size = 32, patch_size = 8 }} }}\n[train]\nmax_steps = 2\nbatch_size = 2\nlr = 1e-3\n",
        out = dir.join("stage1").display().to_string(),
        data = data.display().to_string(),
        llm = qwen(),
    );
    write(&dir.join("stage1.toml"), &text)
}

fn stage2(dir: &Path, imu: &Path, images: &Path, upm: &str) -> PathBuf {
    let text = format!(
        "stage = \"align\"\nout_dir = {out:?}\n[data]\npath = {imu:?}\nmix = [{images:?}]\n[model]\nllm = {llm:?}\ninit = {init:?}\nprojector = {upm}\n[[model.slots]]\nmodality = \"imu\"\nencoder = {{ type = \"imu_patch\", channels = 6, patch_size = 8, stride = 8, transformer = {{ hidden_size = 16, intermediate_size = 32, num_layers = 1, num_heads = 2, max_positions = 8 }} }}\nchannels = [\"ax\", \"ay\", \"az\", \"gx\", \"gy\", \"gz\"]\ntrain_encoder = true\n[train]\nmax_steps = 2\nbatch_size = 2\nlr = 1e-3\n",
        out = dir.join("stage2").display().to_string(),
        imu = imu.display().to_string(),
        images = images.display().to_string(),
        llm = qwen(),
        init = dir.join("stage1/model").display().to_string(),
    );
    write(&dir.join("stage2.toml"), &text)
}

/// Every tensor of a safetensors file, as f32 values by name.
fn tensors(path: &Path) -> Vec<(String, Vec<f32>)> {
    let ckpt = Checkpoint::open(path).unwrap();
    let dev = candle_core::Device::Cpu;
    let mut names = ckpt.names();
    names.sort();
    names
        .into_iter()
        .map(|n| {
            let t = ckpt.tensor(&n, candle_core::DType::F32, &dev).unwrap();
            (n, t.flatten_all().unwrap().to_vec1().unwrap())
        })
        .collect()
}

#[test]
fn a_second_stage_adds_an_imu_slot_to_the_shared_upm_and_keeps_the_image_encoder() {
    if !fetched("easy-vqa") {
        eprintln!("skipping: run `braid fetch easy-vqa`");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (images, imu) = (images(dir), imu(dir));
    braid(&["train", stage1(dir, &images).to_str().unwrap(), "--quiet"]);
    let (one, two) = (dir.join("stage1/model"), dir.join("stage2/model"));
    assert!(one.join("projector.upm.safetensors").is_file());
    braid(&["train", stage2(dir, &imu, &images, UPM).to_str().unwrap(), "--quiet"]);

    let cfg = braid_pipeline::PipelineConfig::load(&two.join("pipeline.toml")).unwrap();
    let kinds: Vec<_> = cfg
        .encoders
        .iter()
        .map(|s| (s.modality.to_string(), s.projector.as_ref().unwrap().kind()))
        .collect();
    assert_eq!(kinds, [("image".into(), "upm"), ("imu".into(), "upm")]);
    let braid_pipeline::Preprocess::Imu(stats) = cfg.encoders[1].preprocess.as_ref().unwrap()
    else {
        panic!("the IMU slot reads IMU files")
    };
    assert!(stats.std.iter().all(|s| *s > 0.0), "statistics from the data: {stats:?}");
    for f in ["encoder.imu", "projector.imu", "projector.image", "projector.upm"] {
        assert!(two.join(format!("{f}.safetensors")).is_file(), "{f}");
    }
    let file = |d: &Path, f: &str| tensors(&d.join(format!("{f}.safetensors")));
    assert_eq!(
        file(&one, "encoder.image"),
        file(&two, "encoder.image"),
        "the image encoder is frozen"
    );
    assert_ne!(
        file(&one, "projector.upm"),
        file(&two, "projector.upm"),
        "the shared experts train"
    );

    let out = braid(&["eval", imu.to_str().unwrap(), "--model", two.to_str().unwrap()]);
    let line: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).unwrap();
    assert_eq!(line["n"].as_u64(), Some(8), "{line}");

    let png = dir.join("routing.png");
    let out = braid(&[
        "routing",
        imu.to_str().unwrap(),
        "--model",
        two.to_str().unwrap(),
        "--png",
        png.to_str().unwrap(),
    ]);
    let line: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).unwrap();
    let w: Vec<f64> = serde_json::from_value(line["imu"]["weights"].clone()).unwrap();
    assert_eq!(w.len(), 2, "{line}");
    assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-5, "{line}");
    assert!(std::fs::read(&png).unwrap().starts_with(b"\x89PNG"));

    // A slot whose experts differ from the shared ones is refused, naming the slot.
    let other = UPM.replace("layers = 1", "layers = 2");
    let bad = stage2(dir, &imu, &images, &other);
    let out = run(&["train", bad.to_str().unwrap(), "--quiet", "--overwrite"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("encoders[1].projector"), "{err}");
}
