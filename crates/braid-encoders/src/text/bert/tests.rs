use std::path::PathBuf;

use braid_core::testing::assert_close;
use braid_nn::gradcheck::check_all_vars_get_grad;
use candle_core::{DType, Device, IndexOp, Tensor};
use candle_nn::{VarBuilder, VarMap};

use super::*;

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/encoders/bert_tiny")
}

fn load() -> (Bert, std::collections::HashMap<String, Tensor>) {
    let dir = fixture();
    let io = candle_core::safetensors::load(dir.join("io.safetensors"), &Device::Cpu).unwrap();
    // from_folder fails unless every checkpoint tensor is used and none is missing.
    let (bert, report) = Bert::from_folder(&dir, DType::F32, &Device::Cpu).unwrap();
    assert_eq!(report.used, 2 * 16 + 5 + 2, "{report}");
    (bert, io)
}

#[test]
fn matches_transformers_with_padding_and_segments() {
    let (bert, io) = load();
    let ids = io["input_ids"].to_dtype(DType::U32).unwrap();
    let mask = io["attention_mask"].to_dtype(DType::F32).unwrap();
    let types = io["token_type_ids"].to_dtype(DType::U32).unwrap();
    let hidden = bert.forward(&ids, Some(&mask), Some(&types)).unwrap();
    // Padded positions of row 1 are compared too: transformers computes them the same way.
    assert_close(&hidden, &io["last_hidden_state"], 1e-4, "last_hidden_state").unwrap();
    assert_close(&bert.pool(&hidden).unwrap(), &io["pooler_output"], 1e-4, "pooler_output")
        .unwrap();
}

#[test]
fn padding_does_not_change_real_tokens() {
    let (bert, io) = load();
    let ids = io["input_ids"].to_dtype(DType::U32).unwrap().i(1..2).unwrap();
    let mask = io["attention_mask"].to_dtype(DType::F32).unwrap().i(1..2).unwrap();
    let padded = bert.forward(&ids, Some(&mask), None).unwrap().i((.., ..6)).unwrap();
    let short = bert.forward(&ids.i((.., ..6)).unwrap(), None, None).unwrap();
    assert_close(&padded, &short, 1e-5, "real tokens").unwrap();
}

#[test]
fn every_weight_gets_gradient() {
    let cfg = BertConfig::from_json_file(&fixture().join("config.json")).unwrap();
    let vm = VarMap::new();
    let bert = Bert::new(&cfg, VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu)).unwrap();
    let ids = Tensor::new(&[[3u32, 7, 1, 9], [4, 2, 0, 5]], &Device::Cpu).unwrap();
    let types = Tensor::new(&[[0u32, 0, 1, 1], [0, 1, 0, 1]], &Device::Cpu).unwrap();
    let hidden = bert.forward(&ids, None, Some(&types)).unwrap();
    let loss = (hidden.sqr().unwrap().mean_all().unwrap()
        + bert.pool(&hidden).unwrap().sum_all().unwrap())
    .unwrap();
    check_all_vars_get_grad(&vm, &loss).unwrap();
}

#[test]
fn too_long_input_is_a_clear_error() {
    let (bert, _) = load();
    let ids = Tensor::zeros((1, 17), DType::U32, &Device::Cpu).unwrap();
    let err = bert.forward(&ids, None, None).unwrap_err().to_string();
    assert!(err.contains("17 tokens") && err.contains("16"), "{err}");
}

#[test]
fn wrong_name_bert_config_fields() {
    let text = std::fs::read_to_string(fixture().join("config.json")).unwrap();
    let base: serde_json::Value = serde_json::from_str(&text).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, serde_json::Value, &str); 6] = [
        ("num_attention_heads", 0.into(), "must be in 1..=1024, got 0"),
        ("num_attention_heads", 5.into(), "does not divide `hidden_size`"),
        ("num_hidden_layers", 1_000_000.into(), "must be in 1..=1024"),
        ("max_position_embeddings", 0.into(), "got 0"),
        ("layer_norm_eps", 0.into(), "(0, 1]"),
        ("position_embedding_type", "relative_key".into(), "`relative_key` is not supported"),
    ];
    for (key, value, want) in cases {
        let mut c = base.clone();
        c[key] = value;
        let p = dir.path().join("config.json");
        std::fs::write(&p, c.to_string()).unwrap();
        let e = BertConfig::from_json_file(&p).unwrap_err().to_string();
        assert!(
            e.contains("config.json") && e.contains(&format!("`{key}`")) && e.contains(want),
            "{e}"
        );
    }
}
