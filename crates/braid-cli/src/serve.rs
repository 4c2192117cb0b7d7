//! `braid serve`: an OpenAI-compatible HTTP server for a language model (and a text
//! embedder), from `braid-serve`; this file only resolves flags and starts it.

use std::net::{IpAddr, SocketAddr};

use anyhow::Context;
use braid_encoders::text::SentenceEncoder;
use braid_serve::{ChatModel, Engine, Limits, Models, ServeConfig, Server};
use candle_core::Device;

use crate::generate::{load, ModelArgs};

/// Flags of `braid serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// A sentence-transformers model for /v1/embeddings: registered name (minilm) or folder.
    #[arg(long)]
    pub embed_model: Option<String>,
    /// Address to listen on; anything but loopback exposes the server to the network.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: IpAddr,
    /// Port (0: any free port, printed at start).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Require `Authorization: Bearer KEY` on every route but /health.
    #[arg(long, env = "BRAID_API_KEY")]
    pub api_key: Option<String>,
    /// Requests running or waiting at once; beyond it clients get 503 with Retry-After.
    #[arg(long, default_value_t = 64)]
    pub max_queue: usize,
    /// Most requests decoded together in one batch.
    #[arg(long, default_value_t = 16)]
    pub max_batch: usize,
    /// Positions the running batch's KV cache may span: a prompt plus its answer must fit,
    /// and the cache's memory is bounded by this times --max-batch rows.
    #[arg(long, default_value_t = 2048)]
    pub batch_span: usize,
    /// Most tokens one answer may ask for.
    #[arg(long, default_value_t = 4096)]
    pub max_tokens: usize,
    /// Most prompt tokens.
    #[arg(long, default_value_t = 8192)]
    pub max_prompt_tokens: usize,
    /// Largest request body, in MiB.
    #[arg(long, default_value_t = 16)]
    pub max_body_mib: usize,
    /// Most media (images, audio clips, IMU recordings) in one chat request.
    #[arg(long, default_value_t = 8)]
    pub max_media: usize,
    /// Seconds a request may take, waiting included; past it the answer is 504.
    #[arg(long, default_value_t = 600.0)]
    pub timeout: f64,
}

/// Runs `braid serve` until Ctrl-C or SIGTERM.
pub fn run(args: &ServeArgs) -> anyhow::Result<()> {
    let start = std::time::Instant::now();
    let path = braid_hub::resolve_model(&args.model.model)?;
    let chat = if path.join(braid_pipeline::PIPELINE_FILE).is_file() {
        ChatModel::open(&path, &Device::Cpu)
            .with_context(|| format!("loading {}", path.display()))?
    } else {
        let (text, _) = load(&args.model)?;
        eprintln!("{}: {}", args.model.model, text.report);
        ChatModel::text(text)?
    };
    eprintln!("loaded {} in {:.2} s", args.model.model, start.elapsed().as_secs_f64());
    let embedder = match &args.embed_model {
        Some(name) => {
            let dir = braid_hub::resolve_model(name)?;
            let (enc, report) = SentenceEncoder::load(&dir, None, &Device::Cpu)
                .with_context(|| format!("loading {}", dir.display()))?;
            eprintln!("loaded {name}: {report}");
            Some((enc, name.clone()))
        }
        None => None,
    };
    let limits = Limits {
        max_body_bytes: args.max_body_mib.saturating_mul(1 << 20),
        max_tokens: args.max_tokens,
        max_prompt_tokens: args.max_prompt_tokens,
        max_media: args.max_media,
        ..Limits::default()
    };
    let cfg = ServeConfig {
        addr: SocketAddr::new(args.host, args.port),
        api_key: args.api_key.clone(),
        max_queue: args.max_queue,
        max_batch: args.max_batch,
        batch_span: args.batch_span,
        timeout: std::time::Duration::try_from_secs_f64(args.timeout)
            .ok()
            .filter(|d| !d.is_zero())
            .with_context(|| {
                format!("--timeout {}: give a positive number of seconds", args.timeout)
            })?,
        limits,
    };
    let models = Models { chat, chat_id: args.model.model.clone(), embedder };
    let engine = Engine::start(models, &cfg)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the HTTP runtime")?;
    rt.block_on(async {
        let server = Server::bind(engine, &cfg).await?;
        eprintln!("serving on http://{} (Ctrl-C stops)", server.local_addr()?);
        server.run(braid_serve::shutdown_signal()).await
    })?;
    Ok(())
}
