use std::path::PathBuf;

use braid_core::testing::assert_close;
use braid_nn::gradcheck::check_all_vars_get_grad;
use candle_core::{DType, Device, IndexOp, Tensor};
use candle_nn::{VarBuilder, VarMap};

use super::*;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/llm").join(name)
}

fn tiny() -> LlamaConfig {
    serde_json::from_str(
        r#"{"vocab_size": 40, "hidden_size": 16, "intermediate_size": 24, "num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": 2, "rms_norm_eps": 1e-6,
            "max_position_embeddings": 32}"#,
    )
    .unwrap()
}

/// Loads a fixture model with the plain safetensors VarBuilder and compares logits with
/// those `transformers` computed (scripts/fixtures/llama_tiny.py).
fn parity(name: &str) {
    let dir = fixture(name);
    let io = candle_core::safetensors::load(dir.join("io.safetensors"), &Device::Cpu).unwrap();
    // from_folder fails unless every checkpoint tensor is used and none is missing.
    let (model, report) = Llama::from_folder(&dir, DType::F32, &Device::Cpu).unwrap();
    assert!(report.is_clean() && report.used > 0, "{report}");
    let ids = io["input_ids"].to_dtype(DType::U32).unwrap();
    let logits = model.forward(&ids).unwrap();
    assert_close(&logits, &io["logits"], 1e-4, name).unwrap();
}

#[test]
fn llama_matches_transformers() {
    parity("llama_tiny");
}

#[test]
fn tied_llama_with_other_rope_base_matches_transformers() {
    parity("llama_tiny_tied");
}

#[test]
fn qwen2_with_qkv_bias_matches_transformers() {
    parity("qwen2_tiny");
}

#[test]
fn cached_decoding_equals_full_forward() {
    let vm = VarMap::new();
    let model =
        Llama::new(&tiny(), VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu)).unwrap();
    let ids = Tensor::new(&[[3u32, 7, 1, 9, 4, 2]], &Device::Cpu).unwrap();
    let full = model.forward(&ids).unwrap();
    let mut cache = model.new_cache();
    let embeds = model.embed_tokens(&ids.i((.., ..4)).unwrap()).unwrap();
    let first = model.forward_embeds(&embeds, None, Some(&mut cache)).unwrap().logits;
    assert_close(&first, &full.i((.., ..4)).unwrap(), 1e-5, "prefix").unwrap();
    for t in 4..6 {
        let e = model.embed_tokens(&ids.i((.., t..t + 1)).unwrap()).unwrap();
        let step = model.forward_embeds(&e, None, Some(&mut cache)).unwrap().logits;
        assert_close(&step, &full.i((.., t..t + 1)).unwrap(), 1e-5, "step").unwrap();
    }
    assert_eq!(cache.len(), 6);
}

#[test]
fn every_weight_gets_gradient() {
    let vm = VarMap::new();
    let model =
        Llama::new(&tiny(), VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu)).unwrap();
    let ids = Tensor::new(&[[3u32, 7, 1, 9], [4, 2, 0, 5]], &Device::Cpu).unwrap();
    let logits = model.forward(&ids).unwrap();
    let targets = Tensor::new(&[[7i64, 1, 9, 4], [2, 0, 5, -100]], &Device::Cpu).unwrap();
    let loss = braid_nn::cross_entropy(&logits, &targets, Some(-100)).unwrap();
    check_all_vars_get_grad(&vm, &loss).unwrap();
}

#[test]
fn wrong_embedding_width_is_a_shape_error() {
    let vm = VarMap::new();
    let model =
        Llama::new(&tiny(), VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu)).unwrap();
    let x = Tensor::zeros((1, 3, 8), DType::F32, &Device::Cpu).unwrap();
    let err = model.forward_embeds(&x, None, None).unwrap_err().to_string();
    assert!(err.contains("llama input embeds"), "{err}");
}

#[test]
fn unsupported_rope_type_is_named() {
    let mut cfg = tiny();
    cfg.rope_parameters =
        Some(RopeParameters { rope_type: Some("yarn".into()), ..RopeParameters::default() });
    let err = cfg.validate().unwrap_err().to_string();
    assert!(err.contains("rope_parameters.rope_type") && err.contains("yarn"), "{err}");
}

#[test]
fn gguf_of_another_architecture_is_an_error_naming_it() {
    use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
    let dir = std::env::temp_dir().join(format!("braid-llm-arch-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("mamba.gguf");
    let w = QTensor::quantize(
        &Tensor::zeros((4, 32), DType::F32, &Device::Cpu).unwrap(),
        GgmlDType::F32,
    )
    .unwrap();
    let meta = gguf_file::Value::String("mamba".into());
    let mut f = std::fs::File::create(&path).unwrap();
    gguf_file::write(&mut f, &[("general.architecture", &meta)], &[("token_embd.weight", &w)])
        .unwrap();
    drop(f);
    for weights in [Weights::Frozen { dequantize: false }, Weights::Trainable(DType::F32)] {
        let err = Llama::load(&path, weights, &Device::Cpu).unwrap_err().to_string();
        assert!(err.contains("`mamba` is not supported") && err.contains("llama"), "{err}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn frozen_model_equals_trainable_model_with_cache() {
    let dir = fixture("qwen2_tiny");
    let (trainable, _) = Llama::from_folder(&dir, DType::F32, &Device::Cpu).unwrap();
    let (frozen, report) = Llama::load_frozen(&dir, false, &Device::Cpu).unwrap();
    assert!(report.is_clean() && !frozen.is_trainable(), "{report}");
    let ids = Tensor::new(&[[3u32, 7, 1, 9, 4, 2]], &Device::Cpu).unwrap();
    let full = trainable.forward(&ids).unwrap();
    assert_close(&frozen.forward(&ids).unwrap(), &full, 1e-5, "frozen full").unwrap();
    let mut cache = frozen.new_cache();
    let e = frozen.embed_tokens(&ids.i((.., ..4)).unwrap()).unwrap();
    frozen.forward_embeds(&e, None, Some(&mut cache)).unwrap();
    for t in 4..6 {
        let e = frozen.embed_tokens(&ids.i((.., t..t + 1)).unwrap()).unwrap();
        let step = frozen.forward_last(&e, None, Some(&mut cache)).unwrap();
        assert_close(&step, &full.i((.., t)).unwrap(), 1e-5, "frozen step").unwrap();
    }
    assert_eq!(cache.len(), 6);
}

/// A prefix computed once and rewound with `truncate` gives each continuation the logits
/// of its own full forward, for the trainable and the frozen body.
#[test]
fn a_truncated_cache_continues_a_shared_prefix() {
    let dir = fixture("qwen2_tiny");
    let (trainable, _) = Llama::from_folder(&dir, DType::F32, &Device::Cpu).unwrap();
    let (frozen, _) = Llama::load_frozen(&dir, false, &Device::Cpu).unwrap();
    for model in [&trainable, &frozen] {
        let prefix = Tensor::new(&[[3u32, 7, 1]], &Device::Cpu).unwrap();
        let mut cache = model.new_cache();
        model
            .forward_embeds(&model.embed_tokens(&prefix).unwrap(), None, Some(&mut cache))
            .unwrap();
        for suffix in [[9u32, 4, 2], [5, 5, 8], [2, 0, 6]] {
            cache.truncate(3).unwrap();
            let ids = Tensor::new(&[[3u32, 7, 1, suffix[0], suffix[1], suffix[2]]], &Device::Cpu)
                .unwrap();
            let full = model.forward(&ids).unwrap();
            let e = model.embed_tokens(&ids.i((.., 3..)).unwrap()).unwrap();
            let got = model.forward_last(&e, None, Some(&mut cache)).unwrap();
            assert_close(&got, &full.i((.., 5)).unwrap(), 1e-5, "continuation").unwrap();
            assert_eq!(cache.len(), 6);
        }
    }
}

#[test]
fn logits_at_chosen_positions_equal_the_full_forward_rows() {
    let dir = fixture("qwen2_tiny");
    let (trainable, _) = Llama::from_folder(&dir, DType::F32, &Device::Cpu).unwrap();
    let (frozen, _) = Llama::load_frozen(&dir, false, &Device::Cpu).unwrap();
    let ids = Tensor::new(&[[3u32, 7, 1, 9, 4, 2]], &Device::Cpu).unwrap();
    for model in [&trainable, &frozen] {
        let full = model.forward(&ids).unwrap().squeeze(0).unwrap();
        let got = model.logits_at(&model.embed_tokens(&ids).unwrap(), &[4, 1]).unwrap();
        let want = Tensor::stack(&[full.i(4).unwrap(), full.i(1).unwrap()], 0).unwrap();
        assert_close(&got, &want, 1e-5, "rows").unwrap();
        let e = model.logits_at(&model.embed_tokens(&ids).unwrap(), &[6]).unwrap_err().to_string();
        assert!(e.contains("position 6"), "{e}");
    }
}

/// A prefix cached once and repeated over a batch continues each row as its own full
/// forward would, for the trainable and the frozen body; the original cache is untouched.
#[test]
fn a_repeated_prefix_cache_continues_a_batch_of_suffixes() {
    let dir = fixture("qwen2_tiny");
    let (trainable, _) = Llama::from_folder(&dir, DType::F32, &Device::Cpu).unwrap();
    let (frozen, _) = Llama::load_frozen(&dir, false, &Device::Cpu).unwrap();
    for model in [&trainable, &frozen] {
        let mut cache = model.new_cache();
        let prefix = Tensor::new(&[[3u32, 7, 1]], &Device::Cpu).unwrap();
        model
            .forward_embeds(&model.embed_tokens(&prefix).unwrap(), None, Some(&mut cache))
            .unwrap();
        let mut batch = cache.repeat_batch(2).unwrap();
        let suffixes = Tensor::new(&[[9u32, 4], [5, 8]], &Device::Cpu).unwrap();
        let got = model
            .forward_last(&model.embed_tokens(&suffixes).unwrap(), None, Some(&mut batch))
            .unwrap();
        for (row, s) in [[9u32, 4], [5, 8]].iter().enumerate() {
            let full = model
                .forward(&Tensor::new(&[[3u32, 7, 1, s[0], s[1]]], &Device::Cpu).unwrap())
                .unwrap();
            assert_close(&got.i(row).unwrap(), &full.i((0, 4)).unwrap(), 1e-5, "row").unwrap();
        }
        assert_eq!((cache.len(), batch.len()), (3, 5));
    }
}

/// The fixture's weights under a config claiming other sizes, in a fresh folder.
fn with_config(name: &str, edit: &[(&str, serde_json::Value)]) -> PathBuf {
    let src = fixture("llama_tiny");
    let dir = std::env::temp_dir().join(format!("braid-llm-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut cfg: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap()).unwrap();
    for (k, v) in edit {
        cfg.insert(k.to_string(), v.clone());
    }
    std::fs::write(dir.join("config.json"), serde_json::to_string(&cfg).unwrap()).unwrap();
    std::fs::copy(src.join("model.safetensors"), dir.join("model.safetensors")).unwrap();
    dir
}

#[test]
fn alloc_frozen_placeholder_of_a_claimed_shape() {
    // 4M x 4096 embeddings: 64 GiB of placeholder zeros if they were built.
    let dir = with_config(
        "huge-vocab",
        &[
            ("vocab_size", 4_194_304.into()),
            ("hidden_size", 4096.into()),
            ("head_dim", 1024.into()),
        ],
    );
    for weights in [Weights::Frozen { dequantize: false }, Weights::Trainable(DType::F32)] {
        let e = Llama::load(&dir, weights, &Device::Cpu).unwrap_err().to_string();
        assert!(
            e.contains("model.safetensors")
                && e.contains(
                    "model.embed_tokens.weight: expected [4194304, 4096], file has [64, 32]"
                ),
            "{e}"
        );
        assert!(!e.contains('\n'), "{e}");
    }
    std::fs::remove_dir_all(&dir).ok();
}
