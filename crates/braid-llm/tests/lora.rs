//! LoRA on the tiny LLaMA against Hugging Face PEFT (scripts/fixtures/llama_lora.py): a PEFT
//! adapter (r = 4, alpha = 8, all seven projections, random non-zero B) loaded into Braid
//! gives PEFT's logits and gradients; merging gives `merge_and_unload()`'s weights; the
//! merged export and a saved adapter load back to the same logits. Tolerance: f32, max abs
//! diff 1e-4 on logits of scale ~4, 1e-5 on weights and gradients.
#![allow(clippy::unwrap_used, clippy::panic)] // test helpers fail loudly

use std::collections::HashMap;
use std::path::PathBuf;

use braid_core::checkpoint::Checkpoint;
use braid_core::testing::max_abs_diff;
use braid_llm::{load_adapter, AdapterConfig, LanguageModel, Llama, LlamaConfig, Weights};
use braid_nn::gradcheck::check_all_vars_get_grad;
use braid_nn::LoraSpec;
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/llm")
}

fn io() -> HashMap<String, Tensor> {
    candle_core::safetensors::load(fixtures().join("llama_lora/io.safetensors"), &Device::Cpu)
        .unwrap()
}

fn ids(io: &HashMap<String, Tensor>) -> Tensor {
    io["input_ids"].to_dtype(DType::U32).unwrap()
}

fn check(got: &Tensor, want: &Tensor, tol: f32, what: &str) {
    let d = max_abs_diff(got, want).unwrap();
    println!("{what}: max abs diff {d:.3e}");
    assert!(d <= tol, "{what}: max abs diff {d} exceeds {tol}");
}

/// The base as constants from the checkpoint, LoRA variables in a fresh VarMap, set from
/// PEFT's adapter.
fn peft_model() -> (Llama, VarMap) {
    let base = fixtures().join("llama_tiny");
    let cfg = LlamaConfig::from_json_file(&base.join("config.json")).unwrap();
    let ckpt = Checkpoint::open(base.join("model.safetensors")).unwrap();
    let (vb, _) = ckpt.var_builder(DType::F32, &Device::Cpu);
    let adapter_dir = fixtures().join("llama_lora/adapter");
    let adapter = AdapterConfig::read(&adapter_dir).unwrap();
    let vm = VarMap::new();
    let model = Llama::with_lora(
        &cfg,
        vb,
        &adapter.spec(VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu)),
    )
    .unwrap();
    let report = load_adapter(&vm, &adapter_dir).unwrap();
    assert_eq!(report.used, 28, "{report}");
    (model, vm)
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("braid-lora-{name}-{}", std::process::id()));
    std::fs::remove_dir_all(&dir).ok();
    dir
}

#[test]
fn peft_adapter_gives_peft_logits() {
    let io = io();
    let (model, _) = peft_model();
    check(&model.forward(&ids(&io)).unwrap(), &io["logits"], 1e-4, "adapter in a VarMap");
    let (frozen_lora, report) = Llama::load_with_adapter(
        &fixtures().join("llama_tiny"),
        &fixtures().join("llama_lora/adapter"),
        DType::F32,
        &Device::Cpu,
    )
    .unwrap();
    assert!(report.is_clean() && report.used == 21, "{report}");
    check(&frozen_lora.forward(&ids(&io)).unwrap(), &io["logits"], 1e-4, "adapter as constants");
}

#[test]
fn merged_weights_equal_peft_merge_and_unload() {
    let io = io();
    let (model, _) = peft_model();
    let merged = model.merge_lora().unwrap();
    let want = candle_core::safetensors::load(
        fixtures().join("llama_lora/merged.safetensors"),
        &Device::Cpu,
    )
    .unwrap();
    let mut names: Vec<_> = merged.keys().collect();
    let mut want_names: Vec<_> = want.keys().collect();
    names.sort();
    want_names.sort();
    assert_eq!(names, want_names);
    let worst =
        names.iter().map(|n| max_abs_diff(&merged[*n], &want[*n]).unwrap()).fold(0f32, f32::max);
    println!("merged weights: max abs diff {worst:.3e}");
    assert!(worst <= 1e-5, "merged weights differ by {worst}");
    let cfg = model.config().clone();
    let plain =
        Llama::new(&cfg, VarBuilder::from_tensors(merged, DType::F32, &Device::Cpu)).unwrap();
    check(&plain.forward(&ids(&io)).unwrap(), &io["logits"], 1e-4, "merged model");
}

#[test]
fn exported_folder_reloads_with_the_same_logits() {
    let io = io();
    let (model, _) = peft_model();
    let dir = temp_dir("export");
    model.export_merged(&dir).unwrap();
    assert!(!dir.join("model.safetensors.tmp").exists());
    let (trainable, report) =
        Llama::load(&dir, Weights::Trainable(DType::F32), &Device::Cpu).unwrap();
    assert!(report.is_clean(), "{report}");
    check(
        &trainable.forward(&ids(&io)).unwrap(),
        &io["logits"],
        1e-4,
        "exported, reloaded trainable",
    );
    let (frozen, _) =
        Llama::load(&dir, Weights::Frozen { dequantize: false }, &Device::Cpu).unwrap();
    check(&frozen.forward(&ids(&io)).unwrap(), &io["logits"], 1e-4, "exported, reloaded frozen");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn saved_adapter_round_trips_in_peft_format() {
    let io = io();
    let (model, _) = peft_model();
    let dir = temp_dir("adapter");
    model.save_adapter(&dir, Some("fixtures/llm/llama_tiny")).unwrap();
    let cfg = AdapterConfig::read(&dir).unwrap();
    assert_eq!((cfg.r, cfg.lora_alpha, cfg.peft_type.as_str()), (4, 8.0, "LORA"));
    let names = Checkpoint::open(dir.join("adapter_model.safetensors")).unwrap().names();
    assert_eq!(names.len(), 28);
    assert!(names
        .contains(&"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight".to_string()));
    let (reloaded, _) =
        Llama::load_with_adapter(&fixtures().join("llama_tiny"), &dir, DType::F32, &Device::Cpu)
            .unwrap();
    check(&reloaded.forward(&ids(&io)).unwrap(), &io["logits"], 1e-4, "saved adapter reloaded");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn lora_gradients_match_peft_and_reach_every_lora_variable() {
    let io = io();
    let (model, vm) = peft_model();
    let loss = || {
        let logits = model.forward(&ids(&io)).unwrap();
        braid_nn::cross_entropy(&logits, &io["targets"], None).unwrap()
    };
    let l = loss();
    check(&l, &io["loss"], 1e-5, "loss");
    let grads = l.backward().unwrap();
    let vars = vm.data().lock().unwrap().clone();
    for name in [
        "model.layers.0.self_attn.q_proj.lora_A.weight",
        "model.layers.1.mlp.down_proj.lora_B.weight",
    ] {
        let g = grads.get(vars[name].as_tensor()).unwrap();
        check(g, &io[&format!("grad.{name}")], 1e-5, name);
    }
    // The LoRA map holds A and B of 7 projections in 2 layers and nothing of the base.
    assert_eq!(vars.len(), 28);
    assert!(
        vars.keys().all(|n| n.ends_with(".lora_A.weight") || n.ends_with(".lora_B.weight")),
        "{:?}",
        vars.keys()
    );
    check_all_vars_get_grad(&vm, &loss()).unwrap();
}

#[test]
fn new_lora_starts_at_the_base_model() {
    let io = io();
    let base = fixtures().join("llama_tiny");
    let cfg = LlamaConfig::from_json_file(&base.join("config.json")).unwrap();
    let ckpt = Checkpoint::open(base.join("model.safetensors")).unwrap();
    let (vb, _) = ckpt.var_builder(DType::F32, &Device::Cpu);
    let vm = VarMap::new();
    let spec = LoraSpec::new(
        Default::default(),
        &["q_proj", "v_proj"],
        VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu),
    );
    let model = Llama::with_lora(&cfg, vb, &spec).unwrap();
    assert_eq!(vm.all_vars().len(), 8);
    let (plain, _) = Llama::load(&base, Weights::Trainable(DType::F32), &Device::Cpu).unwrap();
    let x = ids(&io);
    // Not bit-equal: with variables present the norms take the differentiable path, not the fused kernel.
    check(
        &model.forward(&x).unwrap(),
        &plain.forward(&x).unwrap(),
        1e-5,
        "B = 0: LoRA model equals base",
    );
    let embeds = model.embed_tokens(&x).unwrap();
    assert_eq!(model.forward_embeds(&embeds, None, None).unwrap().logits.dims(), &[2, 7, 64]);
}

/// A link planted at either file's temporary name (`adapter_model.safetensors.tmp`,
/// `adapter_config.json.tmp`, `model.safetensors.tmp`, `config.json.tmp`) is not followed:
/// its target keeps its content and the real files are written.
#[cfg(unix)]
#[test]
fn planted_link_lora_adapter_tmp() {
    let io = io();
    let (model, _) = peft_model();
    let dir = temp_dir("planted");
    std::fs::create_dir_all(&dir).unwrap();
    let victim = dir.join("victim");
    std::fs::write(&victim, "keep").unwrap();
    let plant = |name: &str| {
        let link = dir.join(format!("{name}.tmp"));
        std::fs::remove_file(&link).ok();
        std::os::unix::fs::symlink(&victim, link).unwrap();
    };
    plant("adapter_model.safetensors");
    plant("adapter_config.json");
    model.save_adapter(&dir, Some("fixtures/llm/llama_tiny")).unwrap();
    plant("model.safetensors");
    plant("config.json");
    model.export_merged(&dir).unwrap();
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep", "the link was followed");
    for name in ["adapter_model.safetensors", "adapter_config.json", "model.safetensors"] {
        let tmp = dir.join(format!("{name}.tmp"));
        assert!(std::fs::symlink_metadata(&tmp).is_err(), "{} left behind", tmp.display());
    }
    let (reloaded, _) =
        Llama::load_with_adapter(&fixtures().join("llama_tiny"), &dir, DType::F32, &Device::Cpu)
            .unwrap();
    check(&reloaded.forward(&ids(&io)).unwrap(), &io["logits"], 1e-4, "adapter past a link");
    std::fs::remove_dir_all(&dir).ok();
}
