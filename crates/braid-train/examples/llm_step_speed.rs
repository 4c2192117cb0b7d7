//! Tokens per second of one SmolLM2-135M training step (LoRA r=8 on all projections, f32,
//! forward + backward) and of a forward pass, on a `[1, T]` sequence:
//! `cargo run --release -p braid-train --example llm_step_speed -- [T]`.
#![allow(clippy::unwrap_used)]

use std::time::Instant;

use braid_llm::{LanguageModel, Llama};
use braid_nn::{cross_entropy, LoraConfig, LoraSpec};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;

fn main() {
    let t: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(128);
    let path = braid_hub::resolve_model("smollm2").unwrap();
    let vm = VarMap::new();
    let (llm, _) = Llama::load_with_lora(
        &path,
        DType::F32,
        &Device::Cpu,
        LoraConfig { rank: 8, alpha: 16.0 },
        &LoraSpec::LLAMA_ALL,
        &vm,
    )
    .unwrap();
    let ids = Tensor::arange(100u32, 100 + t as u32, &Device::Cpu).unwrap().unsqueeze(0).unwrap();
    for round in 0..3 {
        let start = Instant::now();
        let embeds = llm.embed_tokens(&ids).unwrap();
        let logits = llm.forward_embeds(&embeds, None, None).unwrap().logits;
        let fwd = start.elapsed().as_secs_f64();
        let loss =
            cross_entropy(&logits.squeeze(0).unwrap(), &ids.squeeze(0).unwrap(), None).unwrap();
        let grads = loss.backward().unwrap();
        let total = start.elapsed().as_secs_f64();
        let got = vm.all_vars().iter().filter(|v| grads.get(v.as_tensor()).is_some()).count();
        println!("round {round}: T={t} forward {fwd:.2} s ({:.0} tok/s), forward+backward {total:.2} s ({:.0} tok/s), {got} LoRA grads", t as f64 / fwd, t as f64 / total);
    }
}
