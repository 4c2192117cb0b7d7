//! `braid chat`: talk to a model through its own chat template: one answer to PROMPT, or
//! an interactive session on stdin that keeps the conversation (`/reset` forgets it,
//! `/exit` or end of input leaves).

use std::io::{BufRead, Write};
use std::path::PathBuf;

use anyhow::Context;
use braid_core::Modality;
use braid_llm::generate::{generate, GenerateConfig, Timing};
use braid_llm::{ChatTemplate, Message, TextModel};
use candle_core::Device;

use crate::chat_media::MediaChat;
use crate::generate::{load, print_stats, ModelArgs, SamplingArgs};

/// Flags of `braid chat`.
#[derive(Debug, clap::Args)]
pub struct ChatArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// One message to answer; without it, an interactive session.
    pub prompt: Option<String>,
    /// A system message opening the conversation.
    #[arg(long)]
    pub system: Option<String>,
    /// An image to talk about (repeatable); the model must be a Braid model directory
    /// with an image slot, or a LLaVA folder. Media open the first user message, one
    /// placeholder each: images, then audio, then IMU, each in the order given.
    #[arg(long = "image")]
    pub images: Vec<PathBuf>,
    /// An audio clip (WAV, FLAC, OGG, MP3; repeatable) for a model with an audio slot.
    #[arg(long = "audio")]
    pub audio: Vec<PathBuf>,
    /// An IMU recording (`.npy` [time, channels], `.csv` with a header, `.ts`; repeatable)
    /// for a model with an IMU slot.
    #[arg(long = "imu")]
    pub imu: Vec<PathBuf>,
    #[command(flatten)]
    pub sampling: SamplingArgs,
}

impl ChatArgs {
    /// Every `--image`, `--audio` and `--imu` file with its modality, in that order.
    fn media(&self) -> Vec<(Modality, PathBuf)> {
        let groups = [
            (Modality::Image, &self.images),
            (Modality::Audio, &self.audio),
            (Modality::Imu, &self.imu),
        ];
        groups
            .into_iter()
            .flat_map(|(m, files)| files.iter().map(move |f| (m, f.clone())))
            .collect()
    }
}

/// One assistant turn: renders `history`, streams the reply to stdout, returns it.
fn reply(
    tm: &TextModel,
    template: &ChatTemplate,
    history: &[Message],
    cfg: &GenerateConfig,
) -> anyhow::Result<(String, Timing)> {
    let prompt = template.render(history, true)?;
    // The template writes the special tokens itself; add none.
    let ids = tm.tokenizer.encode(&prompt, false)?;
    let mut out = std::io::stdout().lock();
    let mut stream = |_: usize, piece: &str| -> braid_core::Result<()> {
        write!(out, "{piece}")
            .and_then(|_| out.flush())
            .map_err(|e| braid_core::Error::Invalid(e.to_string()))
    };
    let (gens, timing) =
        generate(&tm.model, &tm.tokenizer, &[ids], cfg, &Device::Cpu, &mut stream)?;
    println!();
    let text = gens.into_iter().next().map(|g| g.text).unwrap_or_default();
    Ok((text.trim().to_string(), timing))
}

/// `braid demo`'s chat step: one greedy answer from SmolLM2 (quantized), streamed.
pub fn demo_turn(gguf: &std::path::Path) -> anyhow::Result<()> {
    let start = std::time::Instant::now();
    let tm = TextModel::load(gguf, braid_llm::Weights::Frozen { dequantize: false }, &Device::Cpu)?;
    let question = "In one sentence, what is a multimodal model?";
    print!(
        "chat (SmolLM2, Q4_1, loaded in {:.2} s)\n  user: {question}\n  assistant: ",
        start.elapsed().as_secs_f64()
    );
    std::io::stdout().flush()?;
    let cfg = GenerateConfig { max_new_tokens: 48, ..Default::default() };
    let (_, t) = reply(&tm, &tm.chat_template()?, &[Message::new("user", question)], &cfg)?;
    println!(
        "  ({} tokens at {:.0} tokens/s)",
        t.decode_tokens + 1,
        t.decode_tokens as f64 / t.decode_seconds.max(1e-9)
    );
    Ok(())
}

/// Runs `braid chat`.
pub fn run(args: &ChatArgs) -> anyhow::Result<()> {
    let cfg = args.sampling.config(0.0);
    let media = args.media();
    if !media.is_empty() {
        let start = std::time::Instant::now();
        let chat = MediaChat::open(&braid_hub::resolve_model(&args.model.model)?, &media)?;
        let load_s = start.elapsed().as_secs_f64();
        return converse(args, load_s, |history| chat.reply(history, &cfg));
    }
    let (tm, load_s) = load(&args.model)?;
    let template = tm.chat_template()?;
    converse(args, load_s, |history| reply(&tm, &template, history, &cfg))
}

/// One answer to `args.prompt`, or an interactive session; `answer` produces each
/// assistant turn from the conversation so far.
fn converse(
    args: &ChatArgs,
    load_s: f64,
    answer: impl Fn(&[Message]) -> anyhow::Result<(String, Timing)>,
) -> anyhow::Result<()> {
    let mut history: Vec<Message> =
        args.system.iter().map(|s| Message::new("system", s.as_str())).collect();
    if let Some(p) = &args.prompt {
        history.push(Message::new("user", p.as_str()));
        let (_, timing) = answer(&history)?;
        if args.sampling.stats {
            print_stats(&timing, load_s);
        }
        return Ok(());
    }
    eprintln!("chatting with {} (/reset forgets, /exit or Ctrl-D leaves)", args.model.model);
    let stdin = std::io::stdin();
    loop {
        eprint!("> ");
        std::io::stderr().flush()?;
        let mut line = String::new();
        if stdin.lock().read_line(&mut line).context("reading stdin")? == 0 {
            return Ok(());
        }
        match line.trim() {
            "" => continue,
            "/exit" | "/quit" => return Ok(()),
            "/reset" => {
                history.retain(|m| m.role == "system");
                continue;
            }
            text => history.push(Message::new("user", text)),
        }
        let (text, _) = answer(&history)?;
        history.push(Message::new("assistant", text));
    }
}
