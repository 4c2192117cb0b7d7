//! SmolLM2-135M-Instruct speed on one 128-token sequence, CPU f32, for planning the easy-VQA
//! budget (issue 8): (a) frozen forward with quantized weights (inference), (b) forward of the
//! f32 LoRA model, (c) forward + backward into the input embeddings with the LLM frozen
//! (the `align` stage: gradients pass through the LLM to the projector), (d) forward +
//! backward with LoRA rank 8 on every linear (the `instruct` stage). The PyTorch figures
//! quoted in issue 8 (2.5 samples/s of 96 tokens for a stage-1 step, 5.5 forward only)
//! set the bar.
//!
//! `cargo run --release -p braid-train --example vqa_speed [-- PATH.gguf]`; without a path
//! the GGUF in `$BRAID_HOME/models/smollm2` (`braid fetch smollm2`). On a machine whose
//! cores are shared with other work, compare with `RAYON_NUM_THREADS=1`: candle's CPU
//! thread pool spin-waits at its barriers (`BarrierGuard::drop`, half of all samples in
//! `perf`) when its threads are descheduled, which made forward+backward 7x slower with
//! 2 threads than with 1 on 2 oversubscribed cores.

use std::path::PathBuf;
use std::time::Instant;

use braid_core::{Error, Result};
use braid_llm::{LanguageModel, Llama, Weights};
use braid_nn::{cross_entropy, LoraConfig, LoraSpec};
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarMap;

const SEQ: usize = 128;
const REPEATS: usize = 3;

fn gguf_path() -> Result<PathBuf> {
    if let Some(p) = std::env::args().nth(1) {
        return Ok(PathBuf::from(p));
    }
    let home = std::env::var_os("BRAID_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/braid"));
    let dir = home.join("models/smollm2");
    let entries = std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))?;
    entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "gguf"))
        .ok_or_else(|| Error::Invalid(format!("no GGUF in {} (run `braid fetch smollm2`)", dir.display())))
}

/// Best of `REPEATS` timed runs after one warm-up, in seconds.
fn time(mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    f()?;
    let mut best = f64::INFINITY;
    for _ in 0..REPEATS {
        let t = Instant::now();
        f()?;
        best = best.min(t.elapsed().as_secs_f64());
    }
    Ok(best)
}

fn report(name: &str, secs: f64) {
    println!("{name:<44} {secs:>7.3} s  {:>8.1} tokens/s", SEQ as f64 / secs);
}

/// Mean next-token loss of `model` on `embeds` [1, SEQ, d] predicting `ids`.
fn loss(model: &Llama, embeds: &Tensor, ids: &Tensor) -> Result<Tensor> {
    let logits = model.forward_embeds(embeds, None, None)?.logits.squeeze(0)?.narrow(0, 0, SEQ - 1)?;
    cross_entropy(&logits, &ids.narrow(0, 1, SEQ - 1)?, None)
}

fn main() -> Result<()> {
    let path = gguf_path()?;
    let dev = Device::Cpu;
    let ids: Vec<u32> = (0..SEQ as u32).map(|i| 100 + (i * 37) % 4000).collect();
    let ids = Tensor::new(ids.as_slice(), &dev)?;
    let batch = ids.unsqueeze(0)?;
    println!("SmolLM2-135M ({}), {SEQ} tokens, batch 1, {} threads", path.display(), candle_core::utils::get_num_threads());

    let (frozen, _) = Llama::load(&path, Weights::Frozen { dequantize: false }, &dev)?;
    let e = frozen.embed_tokens(&batch)?;
    report("(a) frozen forward, quantized weights", time(|| frozen.forward_embeds(&e, None, None).map(drop))?);

    let (base, _) = Llama::load(&path, Weights::Trainable(DType::F32), &dev)?;
    let e = base.embed_tokens(&batch)?;
    report("    frozen forward, f32 weights", time(|| base.forward_embeds(&e, None, None).map(drop))?);
    let input = Var::from_tensor(&e)?;
    report("(c) forward+backward into the inputs (align)", time(|| loss(&base, input.as_tensor(), &ids)?.backward().map(drop).map_err(Into::into))?);
    drop(base);

    let varmap = VarMap::new();
    let (lora, _) = Llama::load_with_lora(&path, DType::F32, &dev, LoraConfig { rank: 8, alpha: 16.0 }, &LoraSpec::LLAMA_ALL, &varmap)?;
    let e = lora.embed_tokens(&batch)?;
    report("(b) forward, f32 + LoRA", time(|| lora.forward_embeds(&e, None, None).map(drop))?);
    report("(d) forward+backward, LoRA r8 all linears", time(|| loss(&lora, &e, &ids)?.backward().map(drop).map_err(Into::into))?);
    println!("LoRA variables: {}", varmap.all_vars().iter().map(|v| v.elem_count()).sum::<usize>());
    Ok(())
}
