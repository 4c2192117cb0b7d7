//! `braid perplexity`: how well a model predicts a text file, printed as one JSON line
//! `{"tokens": scored tokens, "nll": mean negative log-likelihood (nats), "ppl": exp(nll)}`.

use std::path::PathBuf;

use anyhow::Context;
use braid_llm::perplexity;
use candle_core::Device;

use crate::generate::{load, ModelArgs};

/// Flags of `braid perplexity`.
#[derive(Debug, clap::Args)]
pub struct PerplexityArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// UTF-8 text file.
    #[arg(long)]
    pub input: PathBuf,
    /// Tokens per independently scored window (capped at the model's context).
    #[arg(long, default_value_t = 2048)]
    pub window: usize,
}

/// Runs `braid perplexity`.
pub fn run(args: &PerplexityArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.input)
        .with_context(|| format!("reading {}", args.input.display()))?;
    let (tm, _) = load(&args.model)?;
    let ids = tm.tokenizer.encode(&text, true)?;
    let p = perplexity(&tm.model, &ids, args.window, 512, &Device::Cpu)?;
    println!("{}", serde_json::json!({"tokens": p.tokens, "nll": p.nll, "ppl": p.ppl}));
    Ok(())
}
