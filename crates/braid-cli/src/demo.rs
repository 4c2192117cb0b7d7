//! `braid demo`: the main job, end to end. It fetches the default models, loads each
//! into Braid's modules and reports what was loaded; each capability adds its part.

use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use braid_core::checkpoint::LoadReport;
use braid_encoders::text::{Bert, SentenceEncoder};
use braid_hub::FetchOptions;
use braid_llm::Llama;
use candle_core::{DType, Device};

/// Flags of `braid demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Use only what is already in $BRAID_HOME; never download.
    #[arg(long)]
    pub offline: bool,
}

/// The models the demo loads, in order.
const MODELS: [&str; 2] = ["minilm", "smollm2"];

/// Runs the demo.
pub fn run(args: &DemoArgs) -> anyhow::Result<()> {
    let device = Device::Cpu;
    for name in MODELS {
        let path = if args.offline {
            braid_hub::resolve_model(name)?
        } else {
            braid_hub::fetch(name, &FetchOptions::default())?.main
        };
        let start = Instant::now();
        let (what, report) = match name {
            "minilm" => load_minilm(&path, &device)?,
            _ => load_smollm2(&path, &device)?,
        };
        print_loaded(name, &what, &report, start.elapsed().as_secs_f64());
    }
    similarity_demo(&braid_hub::resolve_model("minilm")?, &device)?;
    crate::chat::demo_turn(&braid_hub::resolve_model("smollm2")?)?;
    Ok(())
}

fn load_minilm(dir: &Path, device: &Device) -> anyhow::Result<(String, LoadReport)> {
    let (bert, report) = Bert::from_folder(dir, DType::F32, device)
        .with_context(|| format!("loading MiniLM from {}", dir.display()))?;
    let c = bert.config();
    let what = format!("BERT encoder, {} layers, hidden {}, {} heads", c.num_hidden_layers, c.hidden_size, c.num_attention_heads);
    Ok((what, report))
}

fn load_smollm2(gguf: &Path, device: &Device) -> anyhow::Result<(String, LoadReport)> {
    let (llama, report) = Llama::from_gguf(gguf, DType::F32, device)
        .with_context(|| format!("loading SmolLM2 from {}", gguf.display()))?;
    let c = llama.config();
    let what = format!(
        "LLaMA decoder (GGUF, dequantized f32), {} layers, hidden {}, {}/{} heads, vocab {}",
        c.num_hidden_layers,
        c.hidden_size,
        c.num_attention_heads,
        c.kv_heads(),
        c.vocab_size
    );
    Ok((what, report))
}

/// Sentences whose MiniLM embeddings the demo compares: the first two mean the same.
const SENTENCES: [&str; 3] = [
    "The wearable sensor recorded the participant walking upstairs.",
    "An accelerometer on the wrist logged someone climbing stairs.",
    "The recipe needs two cups of flour and an egg.",
];

/// Embeds [`SENTENCES`] with MiniLM and prints their cosine similarities.
fn similarity_demo(dir: &Path, device: &Device) -> anyhow::Result<()> {
    let (encoder, _) = SentenceEncoder::load(dir, None, device)?;
    let (emb, _) = encoder.embed(&SENTENCES, device)?;
    // The embeddings are L2-normalised, so dot products are cosine similarities.
    let sims = emb.matmul(&emb.t()?)?.to_vec2::<f32>()?;
    println!("embed (MiniLM, cosine similarity)");
    for (i, j) in [(0, 1), (0, 2)] {
        println!("  {:>6.3}  \"{}\" ~ \"{}\"", sims[i][j], SENTENCES[i], SENTENCES[j]);
    }
    Ok(())
}

fn print_loaded(name: &str, what: &str, report: &LoadReport, seconds: f64) {
    println!("{name}: {what}");
    println!(
        "  {} tensors, {:.1}M parameters, {} missing, {} unexpected, {} mismatched; loaded in {seconds:.2} s",
        report.used,
        report.total_params as f64 / 1e6,
        report.missing.len(),
        report.unexpected.len(),
        report.mismatched.len(),
    );
}
