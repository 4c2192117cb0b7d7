//! Audio and IMU inputs through `braid chat` and `braid eval` (issue 14): a tiny model
//! directory with image, audio and IMU slots, randomly initialised and saved (a fresh
//! `llm_config`, the tokenizer of the committed tiny Qwen2 fixture), answers with media
//! of every kind mixed and repeated, keeps a second turn, and refuses a bad file with one
//! line naming it. Needs no download.
#![allow(clippy::panic, clippy::unwrap_used)]

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use braid_pipeline::{Pipeline, PipelineConfig, PIPELINE_FILE};
use common::{braid, root, run};

const LLM: &str = r#"
llm = "tiny-qwen2"
[llm_config]
vocab_size = 320
hidden_size = 32
intermediate_size = 48
num_hidden_layers = 2
num_attention_heads = 4
num_key_value_heads = 2
max_position_embeddings = 256
"#;

const IMAGE: &str = r#"
[[encoders]]
modality = "image"
[encoders.encoder]
type = "vit"
vit = { hidden_size = 16, intermediate_size = 24, num_hidden_layers = 2, num_attention_heads = 2, image_size = 16, patch_size = 8 }
[encoders.preprocess]
type = "image"
resize = { height = 16, width = 16 }
image_mean = [0.5, 0.5, 0.5]
image_std = [0.5, 0.5, 0.5]
"#;

const AUDIO: &str = r#"
[[encoders]]
modality = "audio"
[encoders.encoder]
type = "spectrogram_patch"
mels = 16
patch_size = 8
stride = 8
transformer = { hidden_size = 16, intermediate_size = 24, num_layers = 1, num_heads = 2, max_positions = 64 }
[encoders.preprocess]
type = "audio"
max_seconds = 2.0
mels = 16
"#;

const IMU: &str = r#"
[[encoders]]
modality = "imu"
[encoders.encoder]
type = "imu_patch"
channels = 3
patch_size = 8
stride = 8
transformer = { hidden_size = 16, intermediate_size = 24, num_layers = 1, num_heads = 2, max_positions = 16 }
[encoders.preprocess]
type = "imu"
channels = ["ax", "ay", "az"]
mean = [0.0, 0.0, 9.8]
std = [1.0, 1.0, 1.0]
rate_hz = 50.0
"#;

/// A randomly initialised model of `slots` saved in `dir`.
fn model(dir: &Path, slots: &[&str]) -> PathBuf {
    let tokenizer = root().join("fixtures/llm/qwen2_chat_tiny").canonicalize().unwrap();
    let text =
        format!("tokenizer = {:?}\n{LLM}{}", tokenizer.display().to_string(), slots.concat());
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(PIPELINE_FILE), text).unwrap();
    let cfg = PipelineConfig::load(&dir.join(PIPELINE_FILE)).unwrap();
    Pipeline::init_seeded(&cfg, dir, &candle_core::Device::Cpu, 7).unwrap().save(dir).unwrap();
    dir.to_path_buf()
}

/// An IMU CSV of `rows` rows at `hz` with a `time` column and `channels` channels.
fn imu_csv(path: &Path, hz: f64, rows: usize, channels: usize) -> String {
    let names: Vec<String> =
        ["ax", "ay", "az", "gx"][..channels].iter().map(|s| s.to_string()).collect();
    let mut text = format!("time,{}\n", names.join(","));
    for i in 0..rows {
        let t = i as f64 / hz;
        let v: Vec<String> =
            (0..channels).map(|c| format!("{:.3}", (t * (c + 1) as f64).sin())).collect();
        text += &format!("{t:.4},{}\n", v.join(","));
    }
    std::fs::write(path, text).unwrap();
    path.to_str().unwrap().to_string()
}

/// A mono 16-bit WAV of `samples` at 16 kHz.
fn wav(path: &Path, samples: &[i16]) -> String {
    let data: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    let mut b = b"RIFF".to_vec();
    b.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
    b.extend_from_slice(b"WAVEfmt ");
    for field in
        [16u32.to_le_bytes().to_vec(), 1u16.to_le_bytes().to_vec(), 1u16.to_le_bytes().to_vec()]
    {
        b.extend_from_slice(&field);
    }
    b.extend_from_slice(&16_000u32.to_le_bytes());
    b.extend_from_slice(&32_000u32.to_le_bytes());
    b.extend_from_slice(&2u16.to_le_bytes());
    b.extend_from_slice(&16u16.to_le_bytes());
    b.extend_from_slice(b"data");
    b.extend_from_slice(&(data.len() as u32).to_le_bytes());
    b.extend_from_slice(&data);
    std::fs::write(path, b).unwrap();
    path.to_str().unwrap().to_string()
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

fn speech() -> String {
    root().join("fixtures/audio/speech_16k.wav").to_str().unwrap().to_string()
}

fn png() -> String {
    root().join("recipes/llava/data/0.png").to_str().unwrap().to_string()
}

#[test]
fn chat_reads_imu_audio_and_images_mixed_and_refuses_bad_files_naming_them() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = model(&tmp.path().join("model"), &[IMAGE, AUDIO, IMU]);
    let m = dir.to_str().unwrap();
    let rec = imu_csv(&tmp.path().join("rec.csv"), 50.0, 64, 3);
    let (audio, image) = (speech(), png());
    let out = braid(&[
        "chat",
        "--model",
        m,
        "--imu",
        &rec,
        "--audio",
        &audio,
        "--image",
        &image,
        "--imu",
        &rec,
        "--max-tokens",
        "3",
        "--ignore-eos",
        "what is the person doing?",
    ]);
    assert!(!String::from_utf8_lossy(&out.stdout).trim().is_empty(), "no answer");

    // A second turn on stdin keeps the first one (and the media) in the history.
    let mut child = Command::new(env!("CARGO_BIN_EXE_braid"))
        .args(["chat", "--model", m, "--imu", &rec, "--audio", &audio])
        .args(["--max-tokens", "2", "--ignore-eos"])
        .current_dir(root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"what is it?\nand now?\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).lines().count() >= 2, "two answers");

    let bad = imu_csv(&tmp.path().join("four.csv"), 50.0, 64, 4);
    fails_naming(&["chat", "--model", m, "--imu", &bad, "hi"], &["four.csv", "4 channels", "3"]);
    let fast = imu_csv(&tmp.path().join("fast.csv"), 100.0, 64, 3);
    fails_naming(&["chat", "--model", m, "--imu", &fast, "hi"], &["fast.csv", "100.0 Hz", "50 Hz"]);
    let silent = wav(&tmp.path().join("silent.wav"), &[0; 8000]);
    fails_naming(&["chat", "--model", m, "--audio", &silent, "hi"], &["silent.wav", "silent"]);
    let long = wav(&tmp.path().join("long.wav"), &vec![3000; 48_000]);
    fails_naming(&["chat", "--model", m, "--audio", &long, "hi"], &["long.wav", "max_seconds"]);
    let junk = tmp.path().join("junk.wav");
    std::fs::write(&junk, b"RIFF, but not really").unwrap();
    fails_naming(&["chat", "--model", m, "--audio", junk.to_str().unwrap(), "hi"], &["junk.wav"]);

    let imu_only = model(&tmp.path().join("imu-only"), &[IMU]);
    fails_naming(
        &["chat", "--model", imu_only.to_str().unwrap(), "--imu", &rec, "--audio", &audio, "hi"],
        &["no audio encoder", "(it has: imu)"],
    );
}

#[test]
fn eval_reports_accuracy_per_question_type() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = model(&tmp.path().join("model"), &[AUDIO, IMU]);
    imu_csv(&tmp.path().join("rec.csv"), 50.0, 64, 3);
    std::fs::copy(speech(), tmp.path().join("speech.wav")).unwrap();
    let sample = |id: &str, answer: &str| {
        serde_json::json!({"id": id, "imu": "rec.csv", "audio": "speech.wav", "conversations": [
            {"from": "human", "value": "<imu>\n<audio>\nwhat is the person doing?"},
            {"from": "gpt", "value": answer}]})
    };
    let samples = [
        sample("u22_r0_w17_activity", "walking"),
        sample("u22_r0_w18_activity", "sitting"),
        sample("u22_r0_w17_posture", "upright"),
        sample("pair", "yes"),
    ];
    let data = tmp.path().join("test.json");
    std::fs::write(&data, serde_json::to_string(&samples).unwrap()).unwrap();
    let (report, answers) = (tmp.path().join("report.json"), tmp.path().join("answers.jsonl"));
    let out = braid(&[
        "eval",
        data.to_str().unwrap(),
        "--model",
        dir.to_str().unwrap(),
        "--out",
        report.to_str().unwrap(),
        "--answers",
        answers.to_str().unwrap(),
    ]);
    let line: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).unwrap();
    assert_eq!(line["n"], 4, "{line}");
    assert!(line["accuracy"].is_number(), "{line}");
    let by_type = line["by_type"].as_object().unwrap();
    let n = |t: &str| by_type[t]["n"].as_u64().unwrap();
    assert_eq!((n("activity"), n("posture"), n("all")), (2, 1, 1), "{line}");
    // Each type's accuracy is that of its answers.
    for a in std::fs::read_to_string(&answers).unwrap().lines() {
        let a: serde_json::Value = serde_json::from_str(a).unwrap();
        let t = braid_pipeline::question_type(a["id"].as_str().unwrap());
        let right = a["answer"].as_str().unwrap().to_lowercase() == a["truth"].as_str().unwrap();
        if n(t) == 1 {
            assert_eq!(by_type[t]["accuracy"].as_f64().unwrap(), f64::from(u8::from(right)));
        }
    }
    let file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(file, line, "--out holds the printed report");
    // One question type, then every second of those: the ids say which were scored.
    let (d, m) = (data.to_str().unwrap(), dir.to_str().unwrap());
    let a = answers.to_str().unwrap();
    braid(&["eval", d, "--model", m, "--type", "activity", "--every", "2", "--answers", a]);
    let scored: Vec<serde_json::Value> = std::fs::read_to_string(&answers)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(scored.len(), 1);
    assert_eq!(scored[0]["id"], "u22_r0_w17_activity");
    let none = Command::new(env!("CARGO_BIN_EXE_braid"))
        .args(["eval", d, "--model", m, "--type", "gait"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&none.stderr);
    assert!(!none.status.success() && err.contains("no sample of question type `gait`"), "{err}");
    let vqa = Command::new(env!("CARGO_BIN_EXE_braid"))
        .args(["eval", "vqa", "--model", m, "--every", "2"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&vqa.stderr);
    assert!(!vqa.status.success() && err.contains("--every and --type apply"), "{err}");
}
