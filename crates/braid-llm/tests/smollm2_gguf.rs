//! SmolLM2-135M-Instruct (Q4_1 GGUF) against `transformers` loading the same file
//! dequantized to f32 (scripts/fixtures/smollm2.py wrote fixtures/llm/smollm2): tokens,
//! next-token logits, 32-token greedy continuations and perplexity (issue 5).
//! Needs `braid fetch smollm2`; skips with a note without it unless BRAID_REQUIRE_ASSETS=1.
#![allow(clippy::unwrap_used, clippy::panic)] // test helpers fail loudly

use std::collections::HashMap;
use std::path::PathBuf;

use braid_core::checkpoint::Gguf;
use braid_llm::generate::{generate, GenerateConfig};
use braid_llm::{perplexity, LanguageModel, Llama, Tokenizer, Weights};
use candle_core::{DType, Device, Tensor};

fn asset() -> Option<PathBuf> {
    match braid_hub::resolve_model("smollm2") {
        Ok(path) => Some(path),
        Err(e) if std::env::var("BRAID_REQUIRE_ASSETS").as_deref() == Ok("1") => panic!("{e}"),
        Err(e) => {
            eprintln!("skipping: {e}");
            None
        }
    }
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/llm/smollm2").join(name)
}

struct Reference {
    tensors: HashMap<String, Tensor>,
    meta: serde_json::Value,
}

impl Reference {
    fn load() -> Self {
        let tensors =
            candle_core::safetensors::load(fixture("reference.safetensors"), &Device::Cpu).unwrap();
        let meta =
            serde_json::from_str(&std::fs::read_to_string(fixture("reference.json")).unwrap())
                .unwrap();
        Self { tensors, meta }
    }

    fn ids(&self, key: &str) -> Vec<u32> {
        self.tensors[key].to_dtype(DType::U32).unwrap().to_vec1().unwrap()
    }

    fn prompts(&self) -> Vec<String> {
        self.meta["prompts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap().to_string())
            .collect()
    }
}

fn max_logit_diff(model: &Llama, r: &Reference) -> f32 {
    let mut worst = 0f32;
    for i in 0..r.prompts().len() {
        let ids = Tensor::new(r.ids(&format!("prompt{i}_ids")), &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        let got = model
            .forward_last(&model.embed_tokens(&ids).unwrap(), None, None)
            .unwrap()
            .squeeze(0)
            .unwrap();
        let want = &r.tensors[&format!("prompt{i}_logits")];
        let d = (got - want).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        eprintln!("prompt {i}: max |logit diff| = {d:.2e}");
        worst = worst.max(d);
    }
    worst
}

#[test]
fn tokenizer_matches_transformers() {
    let Some(path) = asset() else { return };
    let r = Reference::load();
    let tok = Tokenizer::from_gguf(&Gguf::open(&path).unwrap()).unwrap();
    for (i, p) in r.prompts().iter().enumerate() {
        assert_eq!(tok.encode(p, true).unwrap(), r.ids(&format!("prompt{i}_ids")), "prompt {i}");
    }
    let text = std::fs::read_to_string(fixture("ppl.txt")).unwrap();
    assert_eq!(tok.encode(&text, true).unwrap(), r.ids("ppl_ids"));
    assert_eq!(tok.decode(&r.ids("ppl_ids"), false).unwrap(), text);
}

#[test]
fn dequantized_logits_and_perplexity_match_transformers() {
    let Some(path) = asset() else { return };
    let r = Reference::load();
    let (model, _) = Llama::load(&path, Weights::Trainable(DType::F32), &Device::Cpu).unwrap();
    let worst = max_logit_diff(&model, &r);
    assert!(worst < 2e-3, "max abs logit diff {worst}");
    let ids = r.ids("ppl_ids");
    let ppl = perplexity(&model, &ids, 4096, 512, &Device::Cpu).unwrap();
    // silent_perplexity_window_below_two: --window 0 or 1 was raised to 2 without a word.
    for window in [0, 1] {
        let err = perplexity(&model, &ids, window, 512, &Device::Cpu).err().map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("--window")), "window {window} accepted");
    }
    let want = r.meta["perplexity"]["ppl"].as_f64().unwrap();
    let rel = (ppl.ppl - want).abs() / want;
    eprintln!("perplexity {:.4} vs {want:.4} (rel {rel:.2e}), {} tokens", ppl.ppl, ppl.tokens);
    assert_eq!(ppl.tokens as u64, r.meta["perplexity"]["tokens"].as_u64().unwrap());
    assert!(rel < 5e-3, "{rel}");
}

fn greedy_matches(model: &Llama, tok: &Tokenizer, r: &Reference) -> Vec<bool> {
    let cfg = GenerateConfig { max_new_tokens: 32, ignore_eos: true, ..Default::default() };
    let prompts: Vec<Vec<u32>> =
        (0..r.prompts().len()).map(|i| r.ids(&format!("prompt{i}_ids"))).collect();
    // All prompts in one left-padded batch: also checks masking and the KV cache.
    let (out, _) = generate(model, tok, &prompts, &cfg, &Device::Cpu, &mut |_, _| Ok(())).unwrap();
    out.iter().enumerate().map(|(i, g)| g.tokens == r.ids(&format!("prompt{i}_greedy"))).collect()
}

#[test]
fn frozen_f32_generation_matches_transformers() {
    let Some(path) = asset() else { return };
    let r = Reference::load();
    let (model, report) = Llama::load_frozen(&path, true, &Device::Cpu).unwrap();
    assert_eq!(report.used, 2 + 30 * 9);
    let worst = max_logit_diff(&model, &r);
    assert!(worst < 2e-3, "max abs logit diff {worst}");
    let tok = Tokenizer::from_gguf(&Gguf::open(&path).unwrap()).unwrap();
    assert_eq!(greedy_matches(&model, &tok, &r), vec![true; r.prompts().len()]);
}

/// Quantized matmuls round activations to 8 bits (as llama.cpp does), so logits move by
/// ~1e-1; perplexity stays within 0.5% and most greedy continuations agree.
#[test]
fn quantized_perplexity_matches_transformers() {
    let Some(path) = asset() else { return };
    let r = Reference::load();
    let (model, _) = Llama::load_frozen(&path, false, &Device::Cpu).unwrap();
    eprintln!("quantized: worst max |logit diff| {:.3e}", max_logit_diff(&model, &r));
    let tok = Tokenizer::from_gguf(&Gguf::open(&path).unwrap()).unwrap();
    eprintln!("quantized: greedy continuations equal: {:?}", greedy_matches(&model, &tok, &r));
    let ppl = perplexity(&model, &r.ids("ppl_ids"), 4096, 512, &Device::Cpu).unwrap();
    let want = r.meta["perplexity"]["ppl"].as_f64().unwrap();
    let rel = (ppl.ppl - want).abs() / want;
    eprintln!("quantized perplexity {:.4} vs {want:.4} (rel {rel:.2e})", ppl.ppl);
    assert!(rel < 5e-3, "{rel}");
}
