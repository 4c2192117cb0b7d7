//! Decode speed of SmolLM2-135M (Q4_1 GGUF) with a LoRA, in one run on one prompt:
//! (a) the plain frozen body (`Llama::load_frozen`), (b) the frozen body with a rank-8
//! LoRA on all seven projections (`Llama::load_frozen_with_lora`), (c) the trainable body
//! with the same LoRA (`Llama::load_with_lora`, dequantized f32, differentiable ops).
//! Greedy, EOS ignored; `--repeats` rounds of (a), (b), (c) in turn, each body's best
//! round counting.
//! Prints tokens/s and the ratios (b)/(a), (b)/(c), (a)/(c); `bench/frozen_lora_decode.sh`
//! runs it.
//!
//!   cargo run --release -p braid-llm --example frozen_lora_decode -- [--tokens N] [--repeats N] [--gguf PATH]

use std::path::PathBuf;

use braid_core::{Error, Result};
use braid_llm::generate::{generate, GenerateConfig, Generation};
use braid_llm::{varmap_tensors, Llama, Tokenizer};
use braid_nn::{LoraConfig, LoraSpec};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use rand::{Rng, SeedableRng};

const PROMPT: &str = "<|im_start|>user\nWrite a short story about a lighthouse keeper.<|im_end|>\n<|im_start|>assistant\n";

struct Args {
    tokens: usize,
    repeats: usize,
    gguf: Option<PathBuf>,
}

fn args() -> Result<Args> {
    let mut a = Args { tokens: 64, repeats: 3, gguf: None };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| Error::config(flag.clone(), "needs a value"))?;
        let number =
            || value.parse::<usize>().map_err(|e| Error::config(flag.clone(), e.to_string()));
        match flag.as_str() {
            "--tokens" => a.tokens = number()?,
            "--repeats" => a.repeats = number()?.max(1),
            "--gguf" => a.gguf = Some(PathBuf::from(&value)),
            _ => {
                return Err(Error::config(
                    flag,
                    "unknown flag (--tokens N --repeats N --gguf PATH)",
                ))
            }
        }
    }
    Ok(a)
}

/// Seeded A and B (B of a fresh LoRA is zero; small values make the update real work
/// and keep the text sensible), so every run generates the same tokens.
fn randomize(vm: &VarMap) -> Result<()> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let data = vm.data().lock().map_err(|e| Error::Invalid(e.to_string()))?;
    let mut names: Vec<_> = data.keys().collect();
    names.sort();
    for name in names {
        let var = &data[name];
        let bound = if name.ends_with("lora_A.weight") {
            1.0 / (var.dims()[1] as f32).sqrt()
        } else {
            0.02
        };
        let values: Vec<f32> =
            (0..var.elem_count()).map(|_| rng.gen_range(-bound..bound)).collect();
        var.set(&Tensor::from_vec(values, var.dims(), &Device::Cpu)?)?;
    }
    Ok(())
}

/// Decode tokens/s of one generation, and the generation.
fn decode_speed(
    model: &Llama,
    tokenizer: &Tokenizer,
    prompt: &[u32],
    tokens: usize,
) -> Result<(f64, Generation)> {
    let cfg =
        GenerateConfig { max_new_tokens: tokens, ignore_eos: true, ..GenerateConfig::default() };
    let (mut gens, timing) =
        generate(model, tokenizer, &[prompt.to_vec()], &cfg, &Device::Cpu, &mut |_, _| Ok(()))?;
    let speed = timing.decode_tokens as f64 / timing.decode_seconds.max(1e-9);
    Ok((speed, gens.pop().ok_or_else(|| Error::Invalid("no generation".into()))?))
}

fn same_prefix(x: &Generation, y: &Generation) -> usize {
    x.tokens.iter().zip(&y.tokens).take_while(|(p, q)| p == q).count()
}

fn main() -> Result<()> {
    let a = args()?;
    let path = match &a.gguf {
        Some(p) => p.clone(),
        None => braid_hub::resolve_model("smollm2")?,
    };
    let dev = Device::Cpu;
    let tokenizer = Tokenizer::from_gguf(&braid_core::checkpoint::Gguf::open(&path)?)?;
    let prompt = tokenizer.encode(PROMPT, false)?;
    let threads = std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "all".into());
    println!(
        "{} | prompt {} tokens, {} new tokens, best of {} rounds, {threads} threads",
        path.display(),
        prompt.len(),
        a.tokens,
        a.repeats
    );

    let lora = LoraConfig { rank: 8, alpha: 16.0 };
    let vm = VarMap::new();
    let (trainable, _) =
        Llama::load_with_lora(&path, DType::F32, &dev, lora, &LoraSpec::LLAMA_ALL, &vm)?;
    randomize(&vm)?;
    let tensors = varmap_tensors(&vm)?;
    let (frozen_lora, _) =
        Llama::load_frozen_with_lora(&path, &dev, lora, &LoraSpec::LLAMA_ALL, &tensors)?;
    let (frozen, _) = Llama::load_frozen(&path, false, &dev)?;

    // Rounds of (a), (b), (c) one after the other, so that load from other processes
    // falls on all three alike; each body's best round counts.
    let bodies = [
        ("(a) frozen, no LoRA:          ", &frozen),
        ("(b) frozen + rank-8 LoRA (x7):", &frozen_lora),
        ("(c) trainable + the same LoRA:", &trainable),
    ];
    let mut best = [0f64; 3];
    let mut gens = Vec::new();
    for round in 0..a.repeats {
        let mut line = format!("round {round}:");
        gens.clear();
        for (i, (_, model)) in bodies.iter().enumerate() {
            let (speed, g) = decode_speed(model, &tokenizer, &prompt, a.tokens)?;
            best[i] = best[i].max(speed);
            line.push_str(&format!(" {speed:6.1}"));
            gens.push(g);
        }
        eprintln!("{line} tokens/s");
    }
    for ((name, _), speed) in bodies.iter().zip(best) {
        println!("{name} {speed:7.1} tokens/s");
    }
    let [fa, fb, fc] = best;
    let [ga, gb, gc] = gens.as_slice() else { return Err(Error::Invalid("no generations".into())) };
    println!(
        "ratios: (b)/(a) = {:.2}, (b)/(c) = {:.2}, (a)/(c) = {:.2}",
        fb / fa,
        fb / fc,
        fa / fc
    );
    println!(
        "greedy agreement: (b) and (c) share their first {} of {} tokens; (a) and (b) {}",
        same_prefix(gb, gc),
        a.tokens,
        same_prefix(ga, gb)
    );
    println!("(b): {:?}", gb.text);
    Ok(())
}
