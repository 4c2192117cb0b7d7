//! The HTTP API as a library: OpenAI-style `/v1/chat/completions` (whole or streamed as
//! server-sent events), `/v1/completions`, `/v1/embeddings`, `/v1/models` and `/health`,
//! on tokio and axum; the `braid` binary only starts it (`braid serve`). One worker
//! thread owns the models ([`engine`]) and decodes concurrent requests together,
//! continuously batched. Limits (body size, tokens, queue places) are settings
//! with defaults, an optional API key guards every route but `/health`, and the server
//! binds to loopback unless told otherwise.
//!
//! Reference: llama.cpp `tools/server` (routes, timings, slots), OpenAI's API reference.
#![deny(missing_docs)]

pub mod engine;
mod error;
mod model;
pub mod openai;
mod routes;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use braid_core::{Error, Result};

pub use engine::{Engine, Models};
pub use model::ChatModel;

/// What one request may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest request body, in bytes.
    pub max_body_bytes: usize,
    /// Most tokens one answer may ask for (`max_tokens`).
    pub max_tokens: usize,
    /// Tokens of an answer that does not say `max_tokens`.
    pub default_tokens: usize,
    /// Most prompt tokens.
    pub max_prompt_tokens: usize,
    /// Most texts in one embeddings request.
    pub max_inputs: usize,
    /// Most media (images, clips, recordings) in one chat request (each image also within
    /// `BRAID_MAX_PIXELS`, each clip within its slot's seconds).
    pub max_media: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 16 << 20,
            max_tokens: 4096,
            default_tokens: 256,
            max_prompt_tokens: 8192,
            max_inputs: 256,
            max_media: 8,
        }
    }
}

/// How the server runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeConfig {
    /// Address to listen on (loopback by default).
    pub addr: SocketAddr,
    /// A key every request but `/health` must send as `Authorization: Bearer KEY`.
    pub api_key: Option<String>,
    /// Requests running or waiting at once; more are refused with 503 and `Retry-After`.
    pub max_queue: usize,
    /// Most requests decoded together in one batch.
    pub max_batch: usize,
    /// Positions the running batch's KV cache may span (and so, prompt plus answer of any
    /// one request); the cache's memory is bounded by this times `max_batch` rows.
    pub batch_span: usize,
    /// A request not answered within this long (waiting included) is answered 504.
    pub timeout: Duration,
    /// Per-request limits.
    pub limits: Limits,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            api_key: None,
            max_queue: 64,
            max_batch: 16,
            batch_span: 2048,
            timeout: Duration::from_secs(600),
            limits: Limits::default(),
        }
    }
}

/// The routes over `engine`.
pub fn router(engine: Engine, cfg: &ServeConfig) -> Result<Router> {
    let _ = engine.chat.tokenizer()?;
    let state = Arc::new(routes::AppState {
        engine,
        limits: cfg.limits,
        api_key: cfg.api_key.clone(),
        timeout: cfg.timeout,
    });
    Ok(Router::new()
        .route("/health", get(routes::health))
        .route("/v1/models", get(routes::models))
        .route("/v1/chat/completions", post(routes::chat))
        .route("/v1/completions", post(routes::completions))
        .route("/v1/embeddings", post(routes::embeddings))
        .layer(axum::middleware::from_fn_with_state(state.clone(), routes::auth))
        .layer(DefaultBodyLimit::max(cfg.limits.max_body_bytes))
        .with_state(state))
}

/// A server listening on `cfg.addr` (port 0: any free port).
pub struct Server {
    listener: tokio::net::TcpListener,
    app: Router,
}

impl Server {
    /// Binds the address and builds the routes.
    pub async fn bind(engine: Engine, cfg: &ServeConfig) -> Result<Self> {
        let app = router(engine, cfg)?;
        let listener = tokio::net::TcpListener::bind(cfg.addr)
            .await
            .map_err(|e| Error::Invalid(format!("cannot listen on {}: {e}", cfg.addr)))?;
        Ok(Self { listener, app })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> Result<SocketAddr> {
        self.listener.local_addr().map_err(|e| Error::Invalid(e.to_string()))
    }

    /// Serves until `shutdown` resolves (e.g. on SIGTERM or Ctrl-C), then lets requests
    /// in flight finish.
    pub async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<()> {
        axum::serve(self.listener, self.app)
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(|e| Error::Invalid(format!("server: {e}")))
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
