//! Decode speed of SmolLM2-135M (Q4_1 GGUF) with a LoRA, in one run on one prompt:
//! (a) the plain frozen body (`Llama::load_frozen`), (b) the frozen body with a rank-8
//! LoRA on all seven projections (`Llama::load_frozen_with_lora`), (c) the trainable body
//! with the same LoRA (`Llama::load_with_lora`, dequantized f32, differentiable ops).
//! Greedy, EOS ignored; each body decodes `--repeats` times and its best run counts.
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
        let number = || value.parse::<usize>().map_err(|e| Error::config(flag.clone(), e.to_string()));
        match flag.as_str() {
            "--tokens" => a.tokens = number()?,
            "--repeats" => a.repeats = number()?.max(1),
            "--gguf" => a.gguf = Some(PathBuf::from(&value)),
            _ => return Err(Error::config(flag, "unknown flag (--tokens N --repeats N --gguf PATH)")),
        }
    }
    Ok(a)
}

/// B of a fresh LoRA is zero; small seeded values make the update real work and real numbers.
fn randomize_b(vm: &VarMap) -> Result<()> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let data = vm.data().lock().map_err(|e| Error::Invalid(e.to_string()))?;
    let mut names: Vec<_> = data.keys().filter(|n| n.ends_with("lora_B.weight")).collect();
    names.sort();
    for name in names {
        let var = &data[name];
        let values: Vec<f32> = (0..var.elem_count()).map(|_| rng.gen_range(-0.02f32..0.02)).collect();
        var.set(&Tensor::from_vec(values, var.dims(), &Device::Cpu)?)?;
    }
    Ok(())
}

/// Best decode tokens/s over `repeats` generations, and the last generation.
fn decode_speed(model: &Llama, tokenizer: &Tokenizer, prompt: &[u32], a: &Args) -> Result<(f64, Generation)> {
    let cfg = GenerateConfig { max_new_tokens: a.tokens, ignore_eos: true, ..GenerateConfig::default() };
    let mut best = 0f64;
    let mut last = None;
    for _ in 0..a.repeats {
        let (mut gens, timing) = generate(model, tokenizer, &[prompt.to_vec()], &cfg, &Device::Cpu, &mut |_, _| Ok(()))?;
        best = best.max(timing.decode_tokens as f64 / timing.decode_seconds.max(1e-9));
        last = gens.pop();
    }
    Ok((best, last.ok_or_else(|| Error::Invalid("no generation".into()))?))
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
    println!("{} | prompt {} tokens, {} new tokens, best of {}, {threads} threads", path.display(), prompt.len(), a.tokens, a.repeats);

    let lora = LoraConfig { rank: 8, alpha: 16.0 };
    let vm = VarMap::new();
    let (trainable, _) = Llama::load_with_lora(&path, DType::F32, &dev, lora, &LoraSpec::LLAMA_ALL, &vm)?;
    randomize_b(&vm)?;
    let tensors = varmap_tensors(&vm)?;
    let (frozen_lora, _) = Llama::load_frozen_with_lora(&path, &dev, lora, &LoraSpec::LLAMA_ALL, &tensors)?;
    let (frozen, _) = Llama::load_frozen(&path, false, &dev)?;

    let (fa, ga) = decode_speed(&frozen, &tokenizer, &prompt, &a)?;
    println!("(a) frozen, no LoRA:            {fa:7.1} tokens/s");
    let (fb, gb) = decode_speed(&frozen_lora, &tokenizer, &prompt, &a)?;
    println!("(b) frozen + rank-8 LoRA (x7):  {fb:7.1} tokens/s");
    let (fc, gc) = decode_speed(&trainable, &tokenizer, &prompt, &a)?;
    println!("(c) trainable + the same LoRA:  {fc:7.1} tokens/s");
    println!("ratios: (b)/(a) = {:.2}, (b)/(c) = {:.2}, (a)/(c) = {:.2}", fb / fa, fb / fc, fa / fc);
    println!(
        "greedy agreement: (b) and (c) share their first {} of {} tokens; (a) and (b) {}",
        same_prefix(&gb, &gc),
        a.tokens,
        same_prefix(&ga, &gb)
    );
    println!("(b): {:?}", gb.text);
    Ok(())
}
