//! Media in chat requests over real HTTP: tiny Braid model directories (image; image,
//! audio and IMU slots) over the tiny Qwen2, whose answers to requests carrying `data:`
//! URI images, base64 audio and `input_imu` rows, many at once, equal the pipeline's
//! answers to the same files run directly; bad media are refused naming the part.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use braid_llm::generate::GenerateConfig;
use braid_llm::Message;
use braid_serve::{ChatModel, Models};
use candle_core::Device;
use common::*;
use serde_json::{json, Value};

/// The slots a tiny model directory may have: a ViT image slot, a spectrogram-patch audio
/// slot and a patch-transformer IMU slot, each with its preprocessing.
const IMAGE: &str = r#"
[[encoders]]
modality = "image"
[encoders.encoder]
type = "vit"
vit = { hidden_size = 16, intermediate_size = 24, num_hidden_layers = 1, num_attention_heads = 2, image_size = 16, patch_size = 8 }
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
max_seconds = 0.5
mels = 16
trim = true
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

/// A tiny Braid model directory of `slots` in front of the tiny Qwen2, randomly
/// initialised (seeded) and saved in `dir`.
fn model_dir(dir: &std::path::Path, slots: &[&str]) {
    let llm = fixture().canonicalize().unwrap().display().to_string();
    let path = dir.join("pipeline.toml");
    std::fs::write(&path, format!("llm = {llm:?}\n{}", slots.concat())).unwrap();
    let cfg = braid_pipeline::PipelineConfig::load(&path).unwrap();
    braid_pipeline::Pipeline::init_seeded(&cfg, dir, &Device::Cpu, 7).unwrap().save(dir).unwrap();
}

/// What the pipeline `p` answers to `question` about `inputs`, run directly (greedy).
fn direct_answer(
    p: &braid_pipeline::Pipeline,
    question: &str,
    inputs: &[braid_pipeline::Input],
    max: usize,
) -> String {
    let prompter = p.prompter().unwrap();
    let kinds: Vec<_> = inputs.iter().map(|i| i.modality).collect();
    let msgs = braid_pipeline::place_media(&[Message::new("user", question)], &kinds);
    let ids = prompter.prompt_ids(&msgs).unwrap();
    let embeds = p.embed_prompt(&ids, inputs).unwrap();
    let cfg = GenerateConfig { max_new_tokens: max, ..Default::default() };
    let (g, _) = braid_llm::generate::generate_embeds(
        p.llm().unwrap(),
        prompter.tokenizer(),
        &embeds,
        None,
        &[ids],
        &cfg,
        &mut |_, _| Ok(()),
    )
    .unwrap();
    g[0].text.clone()
}

/// What the pipeline in `dir` answers about `images` copies of the gray PNG file.
fn pipeline_answer(dir: &std::path::Path, question: &str, images: usize, max: usize) -> String {
    let p = braid_pipeline::Pipeline::open(dir, FROZEN, &Device::Cpu).unwrap();
    let file = fixture().join("../../image/gray.png");
    let inputs: Vec<_> =
        (0..images).map(|_| p.load_input(braid_core::Modality::Image, &file).unwrap()).collect();
    direct_answer(&p, question, &inputs, max)
}

fn image_request(question: &str, images: usize, max: usize, stream: bool) -> Value {
    let mut content = vec![json!({"type": "text", "text": question})];
    for _ in 0..images {
        let url = format!("data:image/png;base64,{}", png_base64());
        content.push(json!({"type": "image_url", "image_url": {"url": url}}));
    }
    json!({"model": "tiny-vlm", "messages": [{"role": "user", "content": content}], "max_tokens": max, "stream": stream})
}

/// 16 streaming requests carrying 0 to 3 images each, all at once: every one completes with
/// the answer a one-at-a-time run gives; images for a slot the model lacks, or sent as a
/// path, are refused.
#[test]
fn concurrent_streams_with_different_numbers_of_images() {
    let dir = tempfile::tempdir().unwrap();
    model_dir(dir.path(), &[IMAGE]);
    let chat = ChatModel::open(dir.path(), &Device::Cpu).unwrap();
    let addr = start(Models { chat, chat_id: "tiny-vlm".into(), embedder: None }, config());
    let cases: Vec<(String, usize)> =
        (0..8).map(|i| (format!("What is in picture {i}?"), i % 4)).collect();
    let want: Vec<String> =
        cases.iter().map(|(q, n)| pipeline_answer(dir.path(), q, *n, 8)).collect();
    let handles: Vec<_> = cases
        .iter()
        .map(|(q, n)| {
            let body = image_request(q, *n, 8, true).to_string();
            std::thread::spawn(move || request(addr, "POST", "/v1/chat/completions", &body, &[]))
        })
        .collect();
    for ((h, w), (q, n)) in handles.into_iter().zip(&want).zip(&cases) {
        let (status, _, raw) = h.join().unwrap();
        assert_eq!(status, 200, "{raw}");
        let ev = events(&raw);
        assert_eq!(ev.last().map(String::as_str), Some("[DONE]"));
        let text: String = ev[..ev.len() - 1]
            .iter()
            .map(|e| serde_json::from_str::<Value>(e).unwrap())
            .filter_map(|c| c["choices"][0]["delta"]["content"].as_str().map(str::to_string))
            .collect();
        assert_eq!(&text, w, "{q} with {n} images");
    }
    let path = json!({"model": "tiny-vlm", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "file:///etc/passwd"}}]}]});
    let (s, b) = post(addr, "/v1/chat/completions", &path);
    assert!(s == 400 && b["error"]["message"].as_str().unwrap().contains("not fetched"), "{b}");
    // An image over the pixel budget (a 20000 x 20000 PNG of 69 bytes): refused unread.
    use base64::Engine as _;
    let bomb = std::fs::read(fixture().join("../../image/bomb_20000x20000.png")).unwrap();
    let url =
        format!("data:image/png;base64,{}", base64::engine::general_purpose::STANDARD.encode(bomb));
    let big = json!({"model": "tiny-vlm", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": url}}]}]});
    let (s, b) = post(addr, "/v1/chat/completions", &big);
    let msg = b["error"]["message"].as_str().unwrap_or_default();
    assert!(
        s == 400 && msg.contains("decompression-bomb") && msg.contains("BRAID_MAX_PIXELS"),
        "{b}"
    );
    let junk = json!({"model": "tiny-vlm", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,aGVsbG8="}}]}]});
    let (s, b) = post(addr, "/v1/chat/completions", &junk);
    assert!(
        s == 400 && b["error"]["message"].as_str().unwrap().contains("not a recognised image"),
        "{b}"
    );
    let audio = json!({"model": "tiny-vlm", "messages": [{"role": "user", "content": [
        {"type": "input_audio", "input_audio": {"data": "AA==", "format": "wav"}}]}]});
    let (s, _) = post(addr, "/v1/chat/completions", &audio);
    assert_eq!(s, 400);
}

/// An image, a spoken clip (base64 WAV) and an IMU recording (Braid's `input_imu` rows)
/// in one request answer as the pipeline answers the same files run directly; a
/// recording of the wrong channel count or rate is refused naming the part.
#[test]
fn image_audio_and_imu_parts_answer_as_the_files_do() {
    use base64::Engine as _;
    use braid_core::Modality;
    let dir = tempfile::tempdir().unwrap();
    model_dir(dir.path(), &[IMAGE, AUDIO, IMU]);
    let wav = fixture().join("../../audio/speech_16k.wav");
    let png = fixture().join("../../image/gray.png");
    let rows: Vec<Vec<f32>> = (0..64)
        .map(|i| (0..3).map(|c| ((i * (c + 1)) as f32 * 0.02).sin() + 0.5).collect())
        .collect();
    let csv = dir.path().join("rec.csv");
    let mut text = String::from("ax,ay,az\n");
    for r in &rows {
        text += &format!("{},{},{}\n", r[0], r[1], r[2]);
    }
    std::fs::write(&csv, text).unwrap();
    // Direct: the files through the pipeline.
    let want = {
        let p = braid_pipeline::Pipeline::open(dir.path(), FROZEN, &Device::Cpu).unwrap();
        let inputs = vec![
            p.load_input(Modality::Image, &png).unwrap(),
            p.load_input(Modality::Audio, &wav).unwrap(),
            p.load_input(Modality::Imu, &csv).unwrap(),
        ];
        let rows_input = p.load_imu_rows(&rows, Some(50.0), std::path::Path::new("rows")).unwrap();
        let d = (rows_input.data - &inputs[2].data).unwrap().abs().unwrap().max_all().unwrap();
        assert!(d.to_scalar::<f32>().unwrap() < 1e-6, "rows vs CSV");
        direct_answer(&p, "what happens?", &inputs, 8)
    };
    let chat = ChatModel::open(dir.path(), &Device::Cpu).unwrap();
    let addr = start(Models { chat, chat_id: "m".into(), embedder: None }, config());
    let b64 = |p: &std::path::Path| {
        base64::engine::general_purpose::STANDARD.encode(std::fs::read(p).unwrap())
    };
    let body = |imu: Value| {
        json!({"model": "m", "max_tokens": 8, "messages": [{"role": "user", "content": [
            {"type": "text", "text": "what happens?"},
            {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{}", b64(&png))}},
            {"type": "input_audio", "input_audio": {"data": b64(&wav), "format": "wav"}},
            {"type": "input_imu", "input_imu": imu}]}]})
    };
    let (s, b) = post(addr, "/v1/chat/completions", &body(json!({"rows": rows, "rate_hz": 50.0})));
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["choices"][0]["message"]["content"], want.as_str());
    let four: Vec<Vec<f32>> = rows.iter().map(|r| [r.as_slice(), &[0.0]].concat()).collect();
    let (s, b) = post(addr, "/v1/chat/completions", &body(json!({"rows": four})));
    let msg = b["error"]["message"].as_str().unwrap_or_default();
    assert!(s == 400 && msg.contains("content[3] (input_imu)") && msg.contains("4 values"), "{b}");
    let (s, b) = post(addr, "/v1/chat/completions", &body(json!({"rows": rows, "rate_hz": 100.0})));
    let msg = b["error"]["message"].as_str().unwrap_or_default();
    assert!(s == 400 && msg.contains("100 Hz") && msg.contains("50 Hz"), "{b}");
}
