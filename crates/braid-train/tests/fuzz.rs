//! Fuzzing the configs a run and a model directory are made of (issue 17): recipe TOML
//! (every committed recipe as a seed; parsed, validated, written back and parsed again),
//! `pipeline.toml`, a language model's `config.json`, image and audio preprocessor
//! configs, and the HAPT pickle converter, each fed structured mutations
//! (braid-core's `tests/fuzz/mutate.rs`). Each must answer `Ok` or `Err`, never panic.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::path::{Path, PathBuf};

use braid_data::audio::WhisperFeatures;
use braid_data::image::ImageProcessor;
use braid_llm::LlamaConfig;
use braid_pipeline::PipelineConfig;
use braid_train::recipe::Recipe;

#[path = "../../braid-core/tests/fuzz/mutate.rs"]
mod mutate;
use mutate::{fuzz, fuzz_file, Scratch};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every file under `dir` (recursively) whose name ends with `suffix`.
fn files(dir: &Path, suffix: &str) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.to_string_lossy().ends_with(suffix) {
                out.push(std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

#[test]
fn fuzz_recipe_toml() {
    let seeds = files(&root().join("recipes"), ".toml");
    let path = Path::new("recipe.toml");
    fuzz("recipe toml", &seeds, true, 50000, |bytes| {
        let text = String::from_utf8_lossy(bytes);
        let Ok(recipe) = Recipe::parse(&text, path) else { return };
        let _ = recipe.validate();
        // What was read can be written back and read again (the run keeps both).
        if let Ok(again) = recipe.to_toml() {
            Recipe::parse(&again, path).unwrap_or_else(|e| panic!("written back: {e}\n{again}"));
        }
    });
}

#[test]
fn fuzz_pipeline_toml() {
    let mut seeds = files(&root().join("models"), "pipeline.toml");
    seeds.extend(files(&root().join("fixtures/pipeline"), ".toml"));
    let scratch = Scratch::new("pipeline.toml");
    fuzz_file("pipeline toml", &scratch, &seeds, true, 50000, |path| {
        if let Ok(cfg) = PipelineConfig::load(path) {
            let _ = cfg.to_toml();
        }
    });
}

#[test]
fn fuzz_model_config_json() {
    let models = [
        "llama_tiny",
        "llama_tiny_tied",
        "qwen2_tiny",
        "qwen2_chat_tiny",
        "glm_tiny",
        "glm_odd",
        "glm4_tiny",
    ];
    let seeds: Vec<Vec<u8>> = models
        .iter()
        .map(|m| std::fs::read(root().join("fixtures/llm").join(m).join("config.json")).unwrap())
        .collect();
    let scratch = Scratch::new("config.json");
    fuzz_file("llm config.json", &scratch, &seeds, true, 60000, |path| {
        let _ = LlamaConfig::from_json_file(path);
    });
}

/// Encoder `config.json` files (CLIP, Whisper, BERT): read and checked, never built (the
/// sanity bounds are not memory budgets).
#[test]
fn fuzz_encoder_config_json() {
    let f = root().join("fixtures");
    let seeds: Vec<Vec<u8>> = ["clip/p4_32", "clip/p8_40", "whisper/tiny_a", "encoders/bert_tiny"]
        .iter()
        .map(|m| std::fs::read(f.join(m).join("config.json")).unwrap())
        .collect();
    let scratch = Scratch::new("config.json");
    fuzz_file("encoder config.json", &scratch, &seeds, true, 20000, |path| {
        let _ = braid_encoders::image::ClipConfig::from_json_file(path);
        let _ = braid_encoders::audio::WhisperConfig::from_json_file(path);
        let _ = braid_encoders::text::BertConfig::from_json_file(path);
    });
}

/// GLM GGUF files (`glm4`, and `chatglm` with a fused `attn_qkv` that the remap table
/// splits) loaded as frozen models: metadata, remap and every tensor.
#[test]
fn fuzz_glm_gguf_model_load() {
    let llm = root().join("fixtures/llm");
    let seeds: Vec<Vec<u8>> = ["glm4_tiny/model.gguf", "glm_tiny/fused_qkv.gguf"]
        .iter()
        .map(|m| std::fs::read(llm.join(m)).unwrap())
        .collect();
    let scratch = Scratch::new("m.gguf");
    let weights = braid_llm::Weights::Frozen { dequantize: false };
    fuzz_file("glm gguf load", &scratch, &seeds, false, 20000, |path| {
        let _ = braid_llm::Llama::load(path, weights, &candle_core::Device::Cpu);
    });
}

#[test]
fn fuzz_preprocessor_configs() {
    let image = root().join("fixtures/image");
    let seeds = vec![
        std::fs::read(image.join("preprocessor_clip.json")).unwrap(),
        std::fs::read(image.join("preprocessor_vit.json")).unwrap(),
        br#"{"feature_size": 80, "sampling_rate": 16000, "hop_length": 160, "chunk_length": 30, "n_fft": 400}"#.to_vec(),
    ];
    let scratch = Scratch::new("preprocessor_config.json");
    let pixels = braid_data::image::load_rgb(&image.join("rgba.png")).unwrap();
    // candle's kernels on one thread: idle pool workers spinning between thousands of tiny
    // calls would take the CPU from the other fuzz targets running beside this one.
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    pool.install(|| {
        fuzz_file("preprocessor json", &scratch, &seeds, true, 6000, |path| {
            if let Ok(p) = ImageProcessor::from_json_file(path) {
                let _ = p.preprocess(&pixels, &candle_core::Device::Cpu);
            }
            if let Ok(fe) = WhisperFeatures::from_json_file(path) {
                let _ = fe.extract(&[0.1; 400]);
            }
        })
    });
}

#[test]
fn fuzz_hapt_pickle_converter() {
    let seed = std::fs::read(root().join("fixtures/hub/hapt_mini.pkl")).unwrap();
    fuzz("hapt pickle", &[seed], false, 100000, |bytes| {
        let _ = braid_hub::hapt::convert(bytes);
    });
}
