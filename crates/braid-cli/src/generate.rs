//! `braid generate`: continue a raw prompt (no chat template) with a language model,
//! streaming the text to stdout. The model flags and sampling flags here are shared by
//! `braid chat` and `braid perplexity`.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context};
use braid_llm::generate::{generate, GenerateConfig, SamplingConfig, Timing};
use braid_llm::{TextModel, Weights};
use candle_core::Device;

/// Which model and how to hold it.
#[derive(Debug, Clone, clap::Args)]
pub struct ModelArgs {
    /// Registered name (smollm2) or path: a .gguf file or a Hugging Face folder.
    #[arg(long)]
    pub model: String,
    /// Dequantize quantized weights to f32 (reference numbers; slower, more memory).
    #[arg(long)]
    pub dequantize: bool,
    /// CPU threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
}

/// How tokens are chosen and when generation stops.
#[derive(Debug, Clone, clap::Args)]
pub struct SamplingArgs {
    /// Most tokens to generate.
    #[arg(long, default_value_t = 128)]
    pub max_tokens: usize,
    /// Sampling temperature; 0 picks the most likely token.
    #[arg(long)]
    pub temperature: Option<f64>,
    /// Sample among the k most likely tokens only (0: all).
    #[arg(long, default_value_t = 0)]
    pub top_k: usize,
    /// Sample within the smallest set of tokens whose probability reaches p.
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f64,
    /// Penalty above 1 for tokens already seen.
    #[arg(long, default_value_t = 1.0)]
    pub repetition_penalty: f32,
    /// Random seed.
    #[arg(long, default_value_t = 299_792_458)]
    pub seed: u64,
    /// Stop when this text appears (repeatable).
    #[arg(long)]
    pub stop: Vec<String>,
    /// Drop the start of a prompt longer than the context instead of failing.
    #[arg(long)]
    pub truncate: bool,
    /// Do not stop at the end-of-sequence token (benchmarks).
    #[arg(long)]
    pub ignore_eos: bool,
    /// Print timing as one JSON line on stderr.
    #[arg(long)]
    pub stats: bool,
}

impl SamplingArgs {
    /// The generation settings, with `temperature` when the flag is absent.
    pub fn config(&self, temperature: f64) -> GenerateConfig {
        let sampling = SamplingConfig {
            temperature: self.temperature.unwrap_or(temperature),
            top_k: self.top_k,
            top_p: self.top_p,
            repetition_penalty: self.repetition_penalty,
            seed: self.seed,
        };
        GenerateConfig {
            max_new_tokens: self.max_tokens,
            sampling,
            stop: self.stop.clone(),
            ignore_eos: self.ignore_eos,
            truncate: self.truncate,
        }
    }
}

/// Flags of `braid generate`.
#[derive(Debug, clap::Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Text to continue (repeat for a batch).
    #[arg(long, required_unless_present = "prompt_file")]
    pub prompt: Vec<String>,
    /// Read the prompt from a file instead.
    #[arg(long, conflicts_with = "prompt")]
    pub prompt_file: Option<PathBuf>,
    #[command(flatten)]
    pub sampling: SamplingArgs,
}

/// Resolves `--model` and loads the model and tokenizer (quantized unless `--dequantize`).
pub fn load(args: &ModelArgs) -> anyhow::Result<(TextModel, f64)> {
    let path = braid_hub::resolve_model(&args.model)?;
    let start = Instant::now();
    let tm = TextModel::load(&path, Weights::Frozen { dequantize: args.dequantize }, &Device::Cpu)
        .with_context(|| format!("loading {}", path.display()))?;
    Ok((tm, start.elapsed().as_secs_f64()))
}

/// At most this many threads: each one is an OS thread with its own stack, and far beyond
/// the cores only adds switching.
const MAX_THREADS: usize = 1024;

/// `--threads` within 1..=[`MAX_THREADS`] (100000 panicked spawning the pool).
pub fn check_threads(n: usize) -> anyhow::Result<usize> {
    if n == 0 || n > MAX_THREADS {
        anyhow::bail!(
            "--threads {n}: give 1 to {MAX_THREADS} (this machine has {} cores)",
            cores()
        );
    }
    Ok(n)
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The `--stats` line: token counts and rates.
pub fn print_stats(t: &Timing, load_s: f64) {
    let rate = |n: usize, s: f64| if s > 0.0 { n as f64 / s } else { 0.0 };
    let line = serde_json::json!({
        "load_s": load_s,
        "prompt_tokens": t.prompt_tokens, "prompt_s": t.prompt_seconds,
        "prompt_tok_s": rate(t.prompt_tokens, t.prompt_seconds),
        "decode_tokens": t.decode_tokens, "decode_s": t.decode_seconds,
        "decode_tok_s": rate(t.decode_tokens, t.decode_seconds),
    });
    eprintln!("{line}");
}

/// Runs `braid generate`.
pub fn run(args: &GenerateArgs) -> anyhow::Result<()> {
    let texts = match &args.prompt_file {
        Some(f) => {
            vec![std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?]
        }
        None => args.prompt.clone(),
    };
    if texts.is_empty() {
        bail!("no prompt given");
    }
    let (tm, load_s) = load(&args.model)?;
    let prompts =
        texts.iter().map(|t| tm.tokenizer.encode(t, true)).collect::<Result<Vec<_>, _>>()?;
    let cfg = args.sampling.config(0.0);
    let single = prompts.len() == 1;
    let mut out = std::io::stdout().lock();
    let mut stream = |_: usize, piece: &str| -> braid_core::Result<()> {
        if single {
            write!(out, "{piece}")
                .and_then(|_| out.flush())
                .map_err(|e| braid_core::Error::Invalid(e.to_string()))?;
        }
        Ok(())
    };
    let (gens, timing) =
        generate(&tm.model, &tm.tokenizer, &prompts, &cfg, &Device::Cpu, &mut stream)?;
    let mut out = std::io::stdout().lock();
    if single {
        writeln!(out)?;
    } else {
        for (i, g) in gens.iter().enumerate() {
            writeln!(out, "--- {i}\n{}{}", texts[i], g.text)?;
        }
    }
    if args.sampling.stats {
        print_stats(&timing, load_s);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panic_threads_flag_out_of_range() {
        for bad in [0, 100_000, usize::MAX] {
            let err = check_threads(bad).map(|_| ()).err().map(|e| e.to_string());
            assert!(err.is_some_and(|e| e.contains("--threads")), "{bad} accepted");
        }
        assert!(check_threads(2).is_ok_and(|n| n == 2));
    }
}
