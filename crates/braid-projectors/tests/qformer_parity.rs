//! Parity of the Q-Former projector with Hugging Face `Blip2QFormerModel` (+ query tokens and
//! language projection) on the tiny random checkpoint written by `scripts/fixtures/qformer.py`.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use braid_core::checkpoint::Checkpoint;
use braid_projectors::{QFormerConfig, QFormerProjector};
use candle_core::{DType, Device, Tensor};

/// f32 tolerance, max abs diff (outputs are of scale ~1-3).
const TOL: f32 = 1e-4;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/projectors/qformer")
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

#[test]
fn qformer_matches_transformers() {
    let text = std::fs::read_to_string(dir().join("config.json")).unwrap();
    let cfg = QFormerConfig::from_hf_json(&text).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let enc_dim = json["qformer_config"]["encoder_hidden_size"].as_u64().unwrap() as usize;
    let llm = json["text_config"]["hidden_size"].as_u64().unwrap() as usize;

    let path = dir().join("model.safetensors");
    let ckpt = Checkpoint::open(&path).unwrap();
    let (vb, tracker) = ckpt.var_builder(DType::F32, &Device::Cpu);
    let projector = QFormerProjector::new(&cfg, enc_dim, llm, vb).unwrap();
    let report = tracker.report().into_result(&path).unwrap();
    assert_eq!(report.used, ckpt.names().len());

    let io = candle_core::safetensors::load(dir().join("io.safetensors"), &Device::Cpu).unwrap();
    let mask = io["encoder_attention_mask"].to_dtype(DType::F32).unwrap();
    let x = &io["encoder_hidden_states"];
    let hidden = projector.query_output(x, Some(&mask)).unwrap();
    let d_hidden = max_diff(&hidden, &io["last_hidden_state"]);
    let projected = projector.forward(x, Some(&mask)).unwrap();
    let d_projected = max_diff(&projected, &io["projected"]);
    eprintln!("qformer parity: last_hidden_state max abs diff {d_hidden:.2e}, projected {d_projected:.2e}");
    assert!(d_hidden <= TOL && d_projected <= TOL, "{d_hidden} {d_projected}");
}
