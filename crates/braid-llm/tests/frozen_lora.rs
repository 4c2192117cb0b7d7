//! The frozen body with LoRA (`Llama::load_frozen_with_lora`: fused q/k/v and gate/up,
//! in-place KV buffers) against the trainable one (`Llama::load_with_lora`) on the same
//! base weights and the same non-zero LoRA A and B, read from the trainable path's own
//! VarMap: logits of a prefill and of cached decoding steps, greedy generation, and the
//! errors for LoRA tensors that do not fit. PEFT's adapter through the frozen body gives
//! PEFT's logits (scripts/fixtures/llama_lora.py). Tolerance: f32, max abs diff 1e-4
//! relative to the largest logit.
#![allow(clippy::unwrap_used, clippy::panic)] // test helpers fail loudly

use std::collections::HashMap;
use std::path::PathBuf;

use braid_core::testing::max_abs_diff;
use braid_llm::generate::{generate, GenerateConfig};
use braid_llm::{varmap_tensors, LanguageModel, Llama, Tokenizer};
use braid_nn::{LoraConfig, LoraSpec};
use candle_core::{DType, Device, IndexOp, Tensor};
use candle_nn::VarMap;
use rand::{Rng, SeedableRng};

const LORA: LoraConfig = LoraConfig { rank: 4, alpha: 8.0 };

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/llm").join(name)
}

/// Fails unless `got` is within 1e-4 of `want`, relative to `want`'s largest magnitude.
fn check(got: &Tensor, want: &Tensor, what: &str) -> f32 {
    let scale = want.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap().max(1.0);
    let rel = max_abs_diff(got, want).unwrap() / scale;
    println!("{what}: max abs diff {rel:.2e} of the output scale {scale:.2}");
    assert!(rel <= 1e-4, "{what}: max abs diff {rel} of the output scale exceeds 1e-4");
    rel
}

/// Sets every variable (A and B alike) to seeded uniform values in ±0.5: B non-zero, so
/// the update counts.
fn randomize(vm: &VarMap) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let data = vm.data().lock().unwrap();
    let mut names: Vec<_> = data.keys().collect();
    names.sort();
    for name in names {
        let var = &data[name];
        let values: Vec<f32> = (0..var.elem_count()).map(|_| rng.gen_range(-0.5f32..0.5)).collect();
        var.set(&Tensor::from_vec(values, var.dims(), &Device::Cpu).unwrap()).unwrap();
    }
}

/// The trainable model with seeded LoRA on `targets` and the frozen one built from the
/// same VarMap's tensors.
fn pair(model: &str, targets: &[&str]) -> (Llama, Llama, HashMap<String, Tensor>) {
    let dir = fixture(model);
    let vm = VarMap::new();
    let (trainable, _) =
        Llama::load_with_lora(&dir, DType::F32, &Device::Cpu, LORA, targets, &vm).unwrap();
    randomize(&vm);
    let tensors = varmap_tensors(&vm).unwrap();
    let (frozen, report) =
        Llama::load_frozen_with_lora(&dir, &Device::Cpu, LORA, targets, &tensors).unwrap();
    assert!(report.is_clean() && !frozen.is_trainable(), "{report}");
    (trainable, frozen, tensors)
}

/// Prefill of 3 tokens, then 5 cached steps of one token: the frozen logits equal the
/// trainable ones at every step, and the full forward's.
fn prefill_and_decode_agree(trainable: &Llama, frozen: &Llama, what: &str) {
    let ids = Tensor::new(&[[3u32, 7, 1, 9, 4, 2, 8, 5]], &Device::Cpu).unwrap();
    let full = trainable.forward(&ids).unwrap();
    check(&frozen.forward(&ids).unwrap(), &full, &format!("{what}: full forward"));
    let (mut tc, mut fc) = (trainable.new_cache(), frozen.new_cache());
    let prefix = ids.i((.., ..3)).unwrap();
    let want = trainable
        .forward_embeds(&trainable.embed_tokens(&prefix).unwrap(), None, Some(&mut tc))
        .unwrap()
        .logits;
    let got = frozen
        .forward_embeds(&frozen.embed_tokens(&prefix).unwrap(), None, Some(&mut fc))
        .unwrap()
        .logits;
    check(&got, &want, &format!("{what}: prefill"));
    for t in 3..8 {
        let step = ids.i((.., t..t + 1)).unwrap();
        let want = trainable
            .forward_last(&trainable.embed_tokens(&step).unwrap(), None, Some(&mut tc))
            .unwrap();
        let got =
            frozen.forward_last(&frozen.embed_tokens(&step).unwrap(), None, Some(&mut fc)).unwrap();
        check(&got, &want, &format!("{what}: cached step {t}"));
        check(&got, &full.i((.., t)).unwrap(), &format!("{what}: cached step {t} vs full forward"));
    }
    assert_eq!((tc.len(), fc.len()), (8, 8));
}

#[test]
fn frozen_lora_on_all_projections_equals_trainable_lora() {
    let (trainable, frozen, tensors) = pair("llama_tiny", &LoraSpec::LLAMA_ALL);
    assert_eq!(tensors.len(), 28);
    prefill_and_decode_agree(&trainable, &frozen, "llama, all seven");
    // The update is far from nothing: the plain frozen model differs by a lot.
    let (plain, _) = Llama::load_frozen(&fixture("llama_tiny"), false, &Device::Cpu).unwrap();
    let ids = Tensor::new(&[[3u32, 7, 1, 9]], &Device::Cpu).unwrap();
    let moved =
        max_abs_diff(&plain.forward(&ids).unwrap(), &frozen.forward(&ids).unwrap()).unwrap();
    assert!(moved > 0.5, "LoRA moved the logits by only {moved}");
}

/// Qwen2 (q/k/v biases) with LoRA on some parts of each fused projection only.
#[test]
fn frozen_lora_on_some_fused_parts_equals_trainable_lora() {
    let targets = ["q_proj", "v_proj", "o_proj", "up_proj"];
    let (trainable, frozen, tensors) = pair("qwen2_tiny", &targets);
    assert_eq!(tensors.len(), 16);
    prefill_and_decode_agree(&trainable, &frozen, "qwen2, q/v/o/up");
}

#[test]
fn greedy_generation_is_the_same_token_for_token() {
    let dir = fixture("qwen2_chat_tiny");
    let (trainable, frozen, _) = pair("qwen2_chat_tiny", &LoraSpec::LLAMA_ALL);
    let tokenizer = Tokenizer::from_folder(&dir).unwrap();
    let prompt = tokenizer.encode("hello there, how are you", false).unwrap();
    let cfg = GenerateConfig { max_new_tokens: 16, ignore_eos: true, ..GenerateConfig::default() };
    let run = |m: &Llama| {
        generate(m, &tokenizer, std::slice::from_ref(&prompt), &cfg, &Device::Cpu, &mut |_, _| {
            Ok(())
        })
        .unwrap()
        .0
    };
    let (want, got) = (run(&trainable), run(&frozen));
    println!("greedy tokens: {:?}", got[0].tokens);
    assert_eq!(got[0].tokens.len(), 16);
    assert_eq!(got[0].tokens, want[0].tokens);
}

#[test]
fn peft_adapter_through_the_frozen_body_gives_peft_logits() {
    let io =
        candle_core::safetensors::load(fixture("llama_lora/io.safetensors"), &Device::Cpu).unwrap();
    let (model, report) = Llama::load_frozen_with_adapter(
        &fixture("llama_tiny"),
        &fixture("llama_lora/adapter"),
        &Device::Cpu,
    )
    .unwrap();
    assert!(report.is_clean() && !model.is_trainable(), "{report}");
    let ids = io["input_ids"].to_dtype(DType::U32).unwrap();
    check(&model.forward(&ids).unwrap(), &io["logits"], "frozen PEFT adapter");
}

fn load_err(targets: &[&str], lora: LoraConfig, tensors: &HashMap<String, Tensor>) -> String {
    let e =
        Llama::load_frozen_with_lora(&fixture("llama_tiny"), &Device::Cpu, lora, targets, tensors)
            .unwrap_err()
            .to_string();
    assert!(!e.contains('\n'), "{e}");
    e
}

#[test]
fn lora_tensors_that_do_not_fit_are_errors_naming_them() {
    let (_, _, tensors) = pair("llama_tiny", &LoraSpec::LLAMA_ALL);
    let all = &LoraSpec::LLAMA_ALL;

    let mut wrong = tensors.clone();
    let name = "model.layers.1.mlp.down_proj.lora_B.weight";
    wrong.insert(name.into(), Tensor::zeros((32, 5), DType::F32, &Device::Cpu).unwrap());
    let e = load_err(all, LORA, &wrong);
    assert!(
        e.contains("LoRA tensors")
            && e.contains(&format!("{name}: expected [32, 4], file has [32, 5]")),
        "{e}"
    );

    let mut missing = tensors.clone();
    missing.remove("model.layers.0.self_attn.k_proj.lora_A.weight");
    let e = load_err(all, LORA, &missing);
    assert!(e.contains("1 missing (model.layers.0.self_attn.k_proj.lora_A.weight)"), "{e}");

    let mut extra = tensors.clone();
    extra.insert(
        "lm_head.lora_A.weight".into(),
        Tensor::zeros((4, 32), DType::F32, &Device::Cpu).unwrap(),
    );
    let e = load_err(all, LORA, &extra);
    assert!(e.contains("1 unexpected (lm_head.lora_A.weight)"), "{e}");

    // Tensors of projections the targets leave out are unexpected too.
    let e =
        load_err(&["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj"], LORA, &tensors);
    assert!(e.contains("4 unexpected (model.layers.0.mlp.down_proj.lora_A.weight"), "{e}");

    // Another rank than the tensors': every A and B mismatches.
    let e = load_err(all, LoraConfig { rank: 8, alpha: 8.0 }, &tensors);
    assert!(e.contains("28 mismatched") && e.contains("expected [8, 32], file has [4, 32]"), "{e}");

    let e = load_err(all, LoraConfig { rank: 0, alpha: 8.0 }, &tensors);
    assert!(e.contains("lora.rank"), "{e}");
}
