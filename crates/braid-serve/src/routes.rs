//! The HTTP routes: request bodies checked and turned into engine jobs, answers written
//! in OpenAI's shapes (whole, or as server-sent events ending in `data: [DONE]`).
//! Reference: llama.cpp `tools/server/server.cpp` (routes, timings), OpenAI's API reference.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine as _;
use braid_core::Modality;
use braid_llm::generate::{FinishReason, GenerateConfig, SamplingConfig};
use braid_llm::Message;
use braid_pipeline::Input;
use futures_util::stream::{self, StreamExt};
use serde_json::{json, Value};
use tokio::sync::mpsc::UnboundedReceiver;

use crate::engine::{Done, Engine, Event, Refused};
use crate::error::ApiError;
use crate::openai::{
    ChatRequest, CompletionRequest, Content, EmbeddingsRequest, Part, Sampling, Usage,
};
use crate::Limits;

/// What every handler shares.
pub(crate) struct AppState {
    pub(crate) engine: Engine,
    pub(crate) limits: Limits,
    pub(crate) api_key: Option<String>,
    pub(crate) timeout: std::time::Duration,
}

type Shared = State<Arc<AppState>>;

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// A request id, unique within this process.
fn request_id(prefix: &str) -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{prefix}-{}-{n}", std::process::id())
}

/// Checks `Authorization: Bearer KEY` on every route but `/health`.
pub(crate) async fn auth(State(s): Shared, req: Request, next: Next) -> Response {
    let Some(key) = &s.api_key else { return next.run(req).await };
    if req.uri().path() == "/health" {
        return next.run(req).await;
    }
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if given == Some(key.as_str()) {
        return next.run(req).await;
    }
    ApiError::new(StatusCode::UNAUTHORIZED, "authentication_error", "invalid or missing API key")
        .code("invalid_api_key")
        .into_response()
}

/// `GET /health`.
pub(crate) async fn health(State(s): Shared) -> Json<Value> {
    Json(json!({"status": "ok", "queue_free": s.engine.free()}))
}

/// `GET /v1/models`.
pub(crate) async fn models(State(s): Shared) -> Json<Value> {
    let ids = std::iter::once(s.engine.chat_id()).chain(s.engine.embed_id());
    let data: Vec<Value> = ids
        .map(|id| json!({"id": id, "object": "model", "created": 0, "owned_by": "braid"}))
        .collect();
    Json(json!({"object": "list", "data": data}))
}

/// A request body, or why it could not be read (too large: 413).
type Body = Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>;

fn too_large(e: &axum::extract::rejection::BytesRejection) -> ApiError {
    let msg = format!("{} (the limit is --max-body-mib)", e.body_text());
    ApiError::new(e.status(), "invalid_request_error", msg)
}

/// The body as JSON of type `T`, or a 400 naming what was wrong.
fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid body: {e}"), None))
}

fn check_model(s: &AppState, model: &str, want: Option<&str>) -> Result<(), ApiError> {
    if want == Some(model) {
        return Ok(());
    }
    let known: Vec<&str> = std::iter::once(s.engine.chat_id()).chain(s.engine.embed_id()).collect();
    Err(ApiError::new(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        format!("model `{model}` is not served here; models: {}", known.join(", ")),
    )
    .param("model")
    .code("model_not_found"))
}

/// Generation settings from a request's sampling fields, within the server's limits.
fn generate_config(s: &AppState, p: &Sampling) -> Result<GenerateConfig, ApiError> {
    let max = p.max_tokens.unwrap_or(s.limits.default_tokens.min(s.limits.max_tokens));
    if max == 0 || max > s.limits.max_tokens {
        let msg = format!("must be in 1..={} (--max-tokens), got {max}", s.limits.max_tokens);
        return Err(ApiError::bad_request(format!("`max_tokens` {msg}"), Some("max_tokens")));
    }
    let sampling = SamplingConfig {
        temperature: p.temperature.unwrap_or(0.0),
        top_p: p.top_p.unwrap_or(1.0),
        seed: p.seed.unwrap_or(SamplingConfig::default().seed),
        ..SamplingConfig::default()
    };
    let cfg = GenerateConfig {
        max_new_tokens: max,
        sampling,
        stop: p.stop.as_ref().map(|x| x.strings()).unwrap_or_default(),
        ..GenerateConfig::default()
    };
    cfg.validate().map_err(|e| ApiError::bad_request(e.to_string(), None))?;
    Ok(cfg)
}

/// A medium of a request, and where it came from (for errors).
struct Upload {
    data: Media,
    name: String,
}

/// An upload's content.
enum Media {
    /// Image or audio bytes.
    Bytes(Modality, Vec<u8>),
    /// IMU rows and their rate.
    Imu(crate::openai::ImuPart),
}

impl Upload {
    fn modality(&self) -> Modality {
        match &self.data {
            Media::Bytes(m, _) => *m,
            Media::Imu(_) => Modality::Imu,
        }
    }
}

/// A message's text (its text parts, joined by newlines) and its media, in order: images
/// from `data:` URIs (a URL or a path is refused without being read), audio clips from
/// base64 (`input_audio`), IMU recordings as rows (Braid's `input_imu` part).
fn split_content(
    content: &Content,
    i: usize,
    images: &mut Vec<Upload>,
) -> Result<String, ApiError> {
    let parts = match content {
        Content::Text(t) => return Ok(t.clone()),
        Content::Parts(parts) => parts,
    };
    let mut texts = Vec::new();
    for (j, p) in parts.iter().enumerate() {
        let at = format!("messages[{i}].content[{j}]");
        match p {
            Part::Text { text } => texts.push(text.as_str()),
            Part::ImageUrl { image_url } => {
                let url = image_url.get("url").and_then(|u| u.as_str()).or(image_url.as_str());
                let Some(url) = url else {
                    return Err(ApiError::bad_request(
                        format!("{at}: `image_url.url` is missing"),
                        Some("messages"),
                    ));
                };
                let bytes = data_uri(url)
                    .map_err(|m| ApiError::bad_request(format!("{at}: {m}"), Some("messages")))?;
                let name = format!("{at} (image_url)");
                images.push(Upload { data: Media::Bytes(Modality::Image, bytes), name });
            }
            Part::InputAudio { input_audio } => {
                let bad = |m: String| ApiError::bad_request(format!("{at}: {m}"), Some("messages"));
                let Some(data) = input_audio.get("data").and_then(|d| d.as_str()) else {
                    return Err(bad("`input_audio.data` is missing".into()));
                };
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(data.trim())
                    .map_err(|e| bad(format!("`input_audio.data` is not valid base64: {e}")))?;
                let name = format!("{at} (input_audio)");
                images.push(Upload { data: Media::Bytes(Modality::Audio, bytes), name });
            }
            Part::InputImu { input_imu } => {
                let name = format!("{at} (input_imu)");
                images.push(Upload { data: Media::Imu(input_imu.clone()), name });
            }
        }
    }
    Ok(texts.join("\n"))
}

/// The bytes of a base64 `data:` URI; anything else (a URL, a file path) is refused
/// unread: a request never makes the server fetch or open something.
fn data_uri(url: &str) -> Result<Vec<u8>, String> {
    let Some(rest) = url.strip_prefix("data:") else {
        let shown: String = url.chars().take(60).collect();
        return Err(format!(
            "`{shown}` is not a data: URI; send the image inline (data:image/png;base64,...): URLs and paths are not fetched"
        ));
    };
    let Some((_, payload)) = rest.split_once(";base64,") else {
        return Err("a data: URI must be base64 (data:image/png;base64,...)".into());
    };
    base64::engine::general_purpose::STANDARD
        .decode(payload.trim())
        .map_err(|e| format!("the data: URI is not valid base64: {e}"))
}

/// The prompt ids and media inputs of a chat, prepared off the async threads (image
/// decoding and preprocessing take CPU time).
async fn prepare(
    s: &AppState,
    messages: Vec<Message>,
    images: Vec<Upload>,
) -> Result<(Vec<u32>, Vec<Input>), ApiError> {
    let chat = s.engine.chat.clone();
    let max_media = s.limits.max_media;
    let job = tokio::task::spawn_blocking(move || -> Result<_, ApiError> {
        if images.len() > max_media {
            let msg = format!(
                "{} media items, over this server's limit of {max_media} (--max-media)",
                images.len()
            );
            return Err(ApiError::bad_request(msg, Some("messages")));
        }
        let kinds: Vec<Modality> = images.iter().map(Upload::modality).collect();
        let inputs = images
            .iter()
            .map(|u| {
                let name = std::path::Path::new(&u.name);
                match &u.data {
                    Media::Bytes(m, bytes) => chat.load_input(*m, bytes, name),
                    Media::Imu(p) => chat.load_imu(&p.rows, p.rate_hz, name),
                }
            })
            .collect::<braid_core::Result<Vec<_>>>()
            .map_err(|e| ApiError::bad_request(e.to_string(), Some("messages")))?;
        let ids = chat
            .prompt_ids(&messages, &kinds)
            .map_err(|e| ApiError::bad_request(e.to_string(), Some("messages")))?;
        Ok((ids, inputs))
    });
    job.await.map_err(|e| {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", e.to_string())
    })?
}

fn check_prompt(s: &AppState, prompt: &[u32]) -> Result<(), ApiError> {
    if prompt.len() > s.limits.max_prompt_tokens {
        return Err(ApiError::bad_request(
            format!(
                "the prompt has {} tokens, over this server's limit of {} (--max-prompt-tokens)",
                prompt.len(),
                s.limits.max_prompt_tokens
            ),
            Some("messages"),
        ));
    }
    Ok(())
}

fn refused(r: Refused) -> ApiError {
    match r {
        Refused::Full => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            "the server is busy: every queue place is taken (--max-queue); retry shortly",
        )
        .code("queue_full"),
        Refused::Stopped => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "the model worker has stopped",
        ),
    }
}

/// `POST /v1/chat/completions`.
pub(crate) async fn chat(State(s): Shared, body: Body) -> Result<Response, ApiError> {
    let body = body.map_err(|e| too_large(&e))?;
    let req: ChatRequest = parse(&body)?;
    check_model(&s, &req.model, Some(s.engine.chat_id()))?;
    if req.n.is_some_and(|n| n != 1) {
        return Err(ApiError::bad_request("only `n` = 1 is supported".into(), Some("n")));
    }
    if req.messages.is_empty() {
        return Err(ApiError::bad_request("`messages` is empty".into(), Some("messages")));
    }
    let mut images = Vec::new();
    let messages = req
        .messages
        .iter()
        .enumerate()
        .map(|(i, m)| Ok(Message::new(&m.role, split_content(&m.content, i, &mut images)?)))
        .collect::<Result<Vec<_>, ApiError>>()?;
    let cfg = generate_config(&s, &req.sampling())?;
    // A place in the queue first: a busy server refuses before decoding any image.
    let permit = s.engine.reserve().map_err(refused)?;
    let (ids, inputs) = prepare(&s, messages, images).await?;
    check_prompt(&s, &ids)?;
    let events = s.engine.chat(permit, ids, inputs, cfg).map_err(refused)?;
    let id = request_id("chatcmpl");
    let model = req.model.clone();
    if req.stream {
        let opening = json!({"id": id, "object": "chat.completion.chunk", "created": now(),
            "model": model, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
            "finish_reason": null}]});
        return Ok(stream_response(Some(opening), events, move |piece, finish| {
            let delta = match piece {
                Some(p) => json!({"content": p}),
                None => json!({}),
            };
            json!({"id": id, "object": "chat.completion.chunk", "created": now(), "model": model,
                   "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
        }));
    }
    let done = collect(events, s.timeout).await?;
    let body = json!({
        "id": id, "object": "chat.completion", "created": now(), "model": req.model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": done.text},
                     "finish_reason": finish_reason(done.finish)}],
        "usage": usage(&done), "timings": done.timings,
    });
    Ok(Json(body).into_response())
}

/// `POST /v1/completions`.
pub(crate) async fn completions(State(s): Shared, body: Body) -> Result<Response, ApiError> {
    let body = body.map_err(|e| too_large(&e))?;
    let req: CompletionRequest = parse(&body)?;
    check_model(&s, &req.model, Some(s.engine.chat_id()))?;
    if req.n.is_some_and(|n| n != 1) {
        return Err(ApiError::bad_request("only `n` = 1 is supported".into(), Some("n")));
    }
    let cfg = generate_config(&s, &req.sampling())?;
    let tokenizer =
        s.engine.chat.tokenizer().map_err(|e| ApiError::bad_request(e.to_string(), None))?;
    let ids = tokenizer
        .encode(&req.prompt, true)
        .map_err(|e| ApiError::bad_request(e.to_string(), Some("prompt")))?;
    if ids.is_empty() {
        return Err(ApiError::bad_request("`prompt` is empty".into(), Some("prompt")));
    }
    check_prompt(&s, &ids)?;
    let permit = s.engine.reserve().map_err(refused)?;
    let events = s.engine.chat(permit, ids, Vec::new(), cfg).map_err(refused)?;
    let id = request_id("cmpl");
    let model = req.model.clone();
    if req.stream {
        return Ok(stream_response(None, events, move |piece, finish| {
            json!({"id": id, "object": "text_completion", "created": now(), "model": model,
                   "choices": [{"index": 0, "text": piece.unwrap_or_default(), "finish_reason": finish}]})
        }));
    }
    let done = collect(events, s.timeout).await?;
    let body = json!({
        "id": id, "object": "text_completion", "created": now(), "model": req.model,
        "choices": [{"index": 0, "text": done.text, "finish_reason": finish_reason(done.finish)}],
        "usage": usage(&done), "timings": done.timings,
    });
    Ok(Json(body).into_response())
}

/// `POST /v1/embeddings`.
pub(crate) async fn embeddings(State(s): Shared, body: Body) -> Result<Response, ApiError> {
    let body = body.map_err(|e| too_large(&e))?;
    let req: EmbeddingsRequest = parse(&body)?;
    check_model(&s, &req.model, s.engine.embed_id())?;
    // The official client asks for base64 (little-endian f32) unless told otherwise.
    let base64 = match req.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            let msg = format!("`encoding_format` `{other}` is not supported; known: float, base64");
            return Err(ApiError::bad_request(msg, Some("encoding_format")));
        }
    };
    let texts = req.input.texts();
    if texts.is_empty() || texts.len() > s.limits.max_inputs {
        let msg = format!(
            "`input` must hold 1..={} texts (--max-inputs), got {}",
            s.limits.max_inputs,
            texts.len()
        );
        return Err(ApiError::bad_request(msg, Some("input")));
    }
    let rx = s.engine.embed(texts).map_err(refused)?;
    let (rows, tokens) = rx
        .await
        .map_err(|_| refused(Refused::Stopped))?
        .map_err(|e| ApiError::bad_request(e.to_string(), Some("input")))?;
    let data: Vec<Value> = rows
        .into_iter()
        .enumerate()
        .map(|(i, e)| {
            let embedding = if base64 {
                let bytes: Vec<u8> = e.iter().flat_map(|x| x.to_le_bytes()).collect();
                json!(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(e)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    let usage = json!({"prompt_tokens": tokens, "total_tokens": tokens});
    Ok(Json(json!({"object": "list", "data": data, "model": req.model, "usage": usage}))
        .into_response())
}

fn finish_reason(f: FinishReason) -> &'static str {
    match f {
        FinishReason::Length => "length",
        FinishReason::Eos | FinishReason::Stop => "stop",
    }
}

fn usage(d: &Done) -> Usage {
    Usage {
        prompt_tokens: d.prompt_tokens,
        completion_tokens: d.completion_tokens,
        total_tokens: d.prompt_tokens + d.completion_tokens,
    }
}

/// Waits for the end of an answer, at most `timeout` (then the receiver is dropped, which
/// the worker notices).
async fn collect(
    mut events: UnboundedReceiver<Event>,
    timeout: std::time::Duration,
) -> Result<Done, ApiError> {
    let wait = async {
        while let Some(e) = events.recv().await {
            match e {
                Event::Piece(_) => {}
                Event::Done(d) => return Ok(d),
                Event::Failed(msg) => return Err(ApiError::bad_request(msg, None)),
                Event::TimedOut => return Err(timed_out(timeout)),
            }
        }
        Err(refused(Refused::Stopped))
    };
    tokio::time::timeout(timeout, wait).await.unwrap_or_else(|_| Err(timed_out(timeout)))
}

fn timed_out(timeout: std::time::Duration) -> ApiError {
    let msg = format!("no answer within {} s (--timeout)", timeout.as_secs_f64());
    ApiError::new(StatusCode::GATEWAY_TIMEOUT, "server_error", msg).code("timeout")
}

/// Server-sent events: `opening` (if any), one chunk per piece (`chunk(Some(piece), None)`), a last chunk
/// with the finish reason, usage and timings, then `[DONE]`. Dropping the stream (the
/// client left) drops the receiver, which the worker notices.
fn stream_response(
    opening: Option<Value>,
    events: UnboundedReceiver<Event>,
    chunk: impl Fn(Option<String>, Option<&str>) -> Value + Send + Sync + 'static,
) -> Response {
    let chunk = Arc::new(chunk);
    let chunks = stream::unfold((events, false), move |(mut events, over)| {
        let chunk = chunk.clone();
        async move {
            if over {
                return None;
            }
            let (data, over) = match events.recv().await? {
                Event::Piece(p) => (chunk(Some(p), None), false),
                Event::Done(d) => {
                    let mut last = chunk(None, Some(finish_reason(d.finish)));
                    last["usage"] = json!(usage(&d));
                    last["timings"] = json!(d.timings);
                    (last, true)
                }
                Event::Failed(msg) => {
                    let e = json!({"message": msg, "type": "server_error", "param": null, "code": null});
                    (json!({ "error": e }), true)
                }
                Event::TimedOut => {
                    let e = json!({"message": "timed out in the queue", "type": "server_error",
                                   "param": null, "code": "timeout"});
                    (json!({ "error": e }), true)
                }
            };
            Some((data.to_string(), (events, over)))
        }
    });
    let all = stream::iter(opening.map(|v| v.to_string()))
        .chain(chunks)
        .chain(stream::once(async { "[DONE]".to_string() }))
        .map(|data| Ok::<_, Infallible>(SseEvent::default().data(data)));
    Sse::new(all).into_response()
}
