//! `braid-serve` driven over real HTTP on loopback, with a plain TCP client (what any
//! OpenAI client sends): chat whole and streamed against `generate` run directly,
//! concurrent requests decoded together giving the answers of one-at-a-time runs,
//! completions, models, health, and the errors (malformed body, unknown field, unknown
//! model, media for a text model, too many tokens, too large a body, wrong key). The tiny
//! Qwen2 fixture needs nothing fetched; SmolLM2 and MiniLM (`braid fetch`) add the
//! embeddings and a full queue.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;

use braid_llm::generate::{generate, GenerateConfig};
use braid_llm::{Message, TextModel, Weights};
use braid_serve::{ChatModel, Engine, Limits, Models, ServeConfig, Server};
use candle_core::Device;
use serde_json::{json, Value};

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/llm/qwen2_chat_tiny")
}

const FROZEN: Weights = Weights::Frozen { dequantize: false };

/// Starts a server for `models` on a free loopback port, in its own thread.
fn start(models: Models, cfg: ServeConfig) -> SocketAddr {
    let engine = Engine::start(models, &cfg).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let server = Server::bind(engine, &cfg).await.unwrap();
            tx.send(server.local_addr().unwrap()).unwrap();
            server.run(std::future::pending()).await.unwrap();
        });
    });
    rx.recv().unwrap()
}

fn config() -> ServeConfig {
    ServeConfig { addr: SocketAddr::from(([127, 0, 0, 1], 0)), ..ServeConfig::default() }
}

fn tiny() -> Models {
    let text = TextModel::load(&fixture(), FROZEN, &Device::Cpu).unwrap();
    Models { chat: ChatModel::text(text).unwrap(), chat_id: "tiny".into(), embedder: None }
}

/// One HTTP/1.1 request: status, headers (lower-case names) and body.
fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
    headers: &[(&str, &str)],
) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n", body.len());
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap();
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    let chunked = head.to_lowercase().contains("transfer-encoding: chunked");
    (status, head.to_lowercase(), if chunked { dechunk(rest) } else { rest.to_string() })
}

/// The body of a chunked transfer.
fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&after[..n]);
        rest = &after[n + 2..];
    }
    out
}

fn post(addr: SocketAddr, path: &str, body: &Value) -> (u16, Value) {
    let (status, _, body) = request(addr, "POST", path, &body.to_string(), &[]);
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

/// The greedy answer `generate` gives for `question` run directly.
fn direct(question: &str, max: usize) -> String {
    let tm = TextModel::load(&fixture(), FROZEN, &Device::Cpu).unwrap();
    let prompt =
        tm.chat_template().unwrap().render(&[Message::new("user", question)], true).unwrap();
    let ids = tm.tokenizer.encode(&prompt, false).unwrap();
    let cfg = GenerateConfig { max_new_tokens: max, ..Default::default() };
    let (g, _) =
        generate(&tm.model, &tm.tokenizer, &[ids], &cfg, &Device::Cpu, &mut |_, _| Ok(())).unwrap();
    g[0].text.clone()
}

fn chat_body(question: &str, max: usize, stream: bool) -> Value {
    json!({"model": "tiny", "messages": [{"role": "user", "content": question}], "max_tokens": max, "stream": stream})
}

/// The `data:` payloads of a server-sent event stream.
fn events(body: &str) -> Vec<String> {
    body.lines().filter_map(|l| l.strip_prefix("data: ")).map(str::to_string).collect()
}

#[test]
fn chat_whole_and_streamed_equals_generate() {
    let addr = start(tiny(), config());
    let want = direct("What is 2 + 2?", 12);
    let (status, body) =
        post(addr, "/v1/chat/completions", &chat_body("What is 2 + 2?", 12, false));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["choices"][0]["message"]["content"], want.as_str());
    assert_eq!(body["usage"]["completion_tokens"], 12);
    assert_eq!(body["choices"][0]["finish_reason"], "length");
    let (status, head, raw) = request(
        addr,
        "POST",
        "/v1/chat/completions",
        &chat_body("What is 2 + 2?", 12, true).to_string(),
        &[],
    );
    assert!(status == 200 && head.contains("text/event-stream"), "{head}");
    let ev = events(&raw);
    assert_eq!(ev.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> =
        ev[..ev.len() - 1].iter().map(|e| serde_json::from_str(e).unwrap()).collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String =
        chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(text, want);
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "length");
    assert_eq!(last["usage"]["completion_tokens"], 12);
}

#[test]
fn concurrent_requests_are_batched_and_answer_as_one_at_a_time() {
    let addr = start(tiny(), config());
    let questions: Vec<String> =
        (0..6).map(|i| format!("Question {i}: {}?", "why ".repeat(i + 1))).collect();
    let want: Vec<String> = questions.iter().map(|q| direct(q, 10)).collect();
    let handles: Vec<_> = questions
        .iter()
        .map(|q| {
            let body = chat_body(q, 10, false);
            std::thread::spawn(move || post(addr, "/v1/chat/completions", &body))
        })
        .collect();
    let mut batched = 0;
    for (h, w) in handles.into_iter().zip(&want) {
        let (status, body) = h.join().unwrap();
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["choices"][0]["message"]["content"], w.as_str(), "{body}");
        batched = batched.max(body["timings"]["batch"].as_u64().unwrap());
    }
    println!("largest batch: {batched}");
}

#[test]
fn completions_models_and_health() {
    let addr = start(tiny(), config());
    let (status, body) =
        post(addr, "/v1/completions", &json!({"model": "tiny", "prompt": "The", "max_tokens": 5}));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["usage"]["completion_tokens"], 5);
    let (status, _, body) = request(addr, "GET", "/v1/models", "", &[]);
    let models: Value = serde_json::from_str(&body).unwrap();
    assert_eq!((status, models["data"][0]["id"].as_str()), (200, Some("tiny")));
    let (status, _, body) = request(addr, "GET", "/health", "", &[]);
    assert!(status == 200 && body.contains("ok"), "{body}");
}

/// Every error is OpenAI's error object with the status that fits, and the server goes on.
#[test]
fn errors_are_openai_error_objects() {
    let cfg = ServeConfig {
        limits: Limits { max_body_bytes: 32 << 10, max_tokens: 64, ..Limits::default() },
        ..config()
    };
    let addr = start(tiny(), cfg);
    let check = |status: u16, body: &str, want_status: u16, needle: &str| {
        let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
        let msg = v["error"]["message"].as_str().unwrap_or_default();
        assert!(
            status == want_status && msg.contains(needle) && v["error"]["type"].is_string(),
            "{status} {body}"
        );
    };
    let (s, _, b) = request(addr, "POST", "/v1/chat/completions", "{not json", &[]);
    check(s, &b, 400, "invalid body");
    let bad = r#"{"model":"tiny","messages":[{"role":"user","content":"hi"}],"temprature":1}"#;
    let (s, _, b) = request(addr, "POST", "/v1/chat/completions", bad, &[]);
    check(s, &b, 400, "temprature");
    let (s, b) = post(
        addr,
        "/v1/chat/completions",
        &json!({"model": "gpt-4", "messages": [{"role": "user", "content": "hi"}]}),
    );
    check(s, &b.to_string(), 404, "`gpt-4` is not served");
    assert_eq!(b["error"]["code"], "model_not_found");
    let image = json!({"model": "tiny", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": "/etc/passwd"}}]}]});
    let (s, b) = post(addr, "/v1/chat/completions", &image);
    check(s, &b.to_string(), 400, "not a data: URI");
    let inline = json!({"model": "tiny", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{}", png_base64())}}]}]});
    let (s, b) = post(addr, "/v1/chat/completions", &inline);
    check(s, &b.to_string(), 400, "text only");
    let (s, b) = post(addr, "/v1/chat/completions", &chat_body("hi", 1000, false));
    check(s, &b.to_string(), 400, "`max_tokens` must be in 1..=64");
    assert_eq!(b["error"]["param"], "max_tokens");
    let (s, b) = post(
        addr,
        "/v1/chat/completions",
        &json!({"model": "tiny", "messages": [{"role": "user", "content": "x".repeat(40_000)}]}),
    );
    check(s, &b.to_string(), 413, "--max-body-mib");
    let (s, b) = post(addr, "/v1/embeddings", &json!({"model": "tiny", "input": "hi"}));
    check(s, &b.to_string(), 404, "not served");
    // And it still serves.
    let (s, _) = post(addr, "/v1/chat/completions", &chat_body("hi", 2, false));
    assert_eq!(s, 200);
}

#[test]
fn a_request_past_its_deadline_is_a_504() {
    let addr =
        start(tiny(), ServeConfig { timeout: std::time::Duration::from_millis(1), ..config() });
    let (s, b) = post(addr, "/v1/chat/completions", &chat_body("hi", 60, false));
    assert!(s == 504 && b["error"]["code"] == "timeout", "{s} {b}");
}

#[test]
fn an_api_key_guards_every_route_but_health() {
    let addr = start(tiny(), ServeConfig { api_key: Some("sesame".into()), ..config() });
    let body = chat_body("hi", 2, false).to_string();
    let (s, _, b) = request(addr, "POST", "/v1/chat/completions", &body, &[]);
    assert!(s == 401 && b.contains("invalid_api_key"), "{s} {b}");
    let (s, _, _) =
        request(addr, "POST", "/v1/chat/completions", &body, &[("authorization", "Bearer wrong")]);
    assert_eq!(s, 401);
    let (s, _, _) = request(addr, "GET", "/v1/models", "", &[]);
    assert_eq!(s, 401);
    let (s, _, _) =
        request(addr, "POST", "/v1/chat/completions", &body, &[("authorization", "Bearer sesame")]);
    assert_eq!(s, 200);
    let (s, _, _) = request(addr, "GET", "/health", "", &[]);
    assert_eq!(s, 200);
}

/// SmolLM2 and MiniLM from `braid fetch`: embeddings equal `SentenceEncoder::embed`'s
/// within 1e-6, and a full queue answers 503 with Retry-After at once, then serves again.
#[test]
fn embeddings_and_a_full_queue_with_fetched_models() {
    let (Ok(llm), Ok(minilm)) =
        (braid_hub::resolve_model("smollm2"), braid_hub::resolve_model("minilm"))
    else {
        assert!(std::env::var("BRAID_REQUIRE_ASSETS").is_err(), "smollm2 / minilm not fetched");
        eprintln!("skipped: run `braid fetch smollm2 minilm`");
        return;
    };
    let text = TextModel::load(&llm, FROZEN, &Device::Cpu).unwrap();
    let (enc, _) =
        braid_encoders::text::SentenceEncoder::load(&minilm, None, &Device::Cpu).unwrap();
    let texts =
        ["The wearable records acceleration.", "A gyroscope measures rotation rate, in rad/s."];
    let (want, _) = enc.embed(&texts, &Device::Cpu).unwrap();
    let want: Vec<Vec<f32>> = want.to_vec2().unwrap();
    let chat = ChatModel::text(text).unwrap();
    let models = Models { chat, chat_id: "smollm2".into(), embedder: Some((enc, "minilm".into())) };
    let addr = start(models, ServeConfig { max_queue: 1, ..config() });
    let (s, b) = post(addr, "/v1/embeddings", &json!({"model": "minilm", "input": texts}));
    assert_eq!(s, 200, "{b}");
    for (i, w) in want.iter().enumerate() {
        let got: Vec<f32> = serde_json::from_value(b["data"][i]["embedding"].clone()).unwrap();
        let d = got.iter().zip(w).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(d <= 1e-6, "row {i}: {d}");
    }
    // base64 (what the official client asks for): the same floats, little-endian.
    use base64::Engine as _;
    let (s, b) = post(
        addr,
        "/v1/embeddings",
        &json!({"model": "minilm", "input": texts, "encoding_format": "base64"}),
    );
    assert_eq!(s, 200, "{b}");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b["data"][0]["embedding"].as_str().unwrap())
        .unwrap();
    let floats: Vec<f32> =
        bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    let d = floats.iter().zip(&want[0]).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(floats.len() == want[0].len() && d <= 1e-6, "{d}");
    // One long answer holds the only queue place; the next request is turned away at once.
    let long = json!({"model": "smollm2", "messages": [{"role": "user", "content": "Tell a long story."}],
                      "max_tokens": 160, "stream": true});
    let first = std::thread::spawn(move || {
        request(addr, "POST", "/v1/chat/completions", &long.to_string(), &[])
    });
    std::thread::sleep(std::time::Duration::from_millis(500));
    let t = std::time::Instant::now();
    let (s, head, b) = request(
        addr,
        "POST",
        "/v1/chat/completions",
        &chat_body("hi", 2, false).to_string().replace("tiny", "smollm2"),
        &[],
    );
    assert!(
        s == 503 && head.contains("retry-after: 1") && b.contains("queue_full"),
        "{s} {head} {b}"
    );
    assert!(t.elapsed().as_secs_f64() < 1.0, "refused after {:?}", t.elapsed());
    let (s, _, _) = first.join().unwrap();
    assert_eq!(s, 200);
    // Continuous batching: a short request that arrives while a long answer is being
    // decoded joins the running batch and is answered before the long one ends.
    let text = TextModel::load(&llm, FROZEN, &Device::Cpu).unwrap();
    let models =
        Models { chat: ChatModel::text(text).unwrap(), chat_id: "smollm2".into(), embedder: None };
    let addr2 = start(models, config());
    let long = json!({"model": "smollm2", "max_tokens": 200,
        "messages": [{"role": "user", "content": "Tell a long story about a hiker."}]})
    .to_string();
    let t0 = std::time::Instant::now();
    let first = std::thread::spawn(move || {
        let r = request(addr2, "POST", "/v1/chat/completions", &long, &[]);
        (r, t0.elapsed())
    });
    std::thread::sleep(std::time::Duration::from_millis(800));
    let short = chat_body("hi", 4, false).to_string().replace("tiny", "smollm2");
    let (s, _, b) = request(addr2, "POST", "/v1/chat/completions", &short, &[]);
    let short_done = t0.elapsed();
    assert_eq!(s, 200, "{b}");
    let v: Value = serde_json::from_str(&b).unwrap();
    let ((s, _, lb), long_done) = first.join().unwrap();
    let lv: Value = serde_json::from_str(&lb).unwrap();
    assert_eq!(s, 200);
    println!(
        "short answered after {short_done:?} (batch {}), long after {long_done:?} ({} tokens)",
        v["timings"]["batch"], lv["usage"]["completion_tokens"]
    );
    if lv["usage"]["completion_tokens"].as_u64().unwrap() > 100 {
        assert!(short_done < long_done && v["timings"]["batch"] == 2, "{v}");
    }
    let (s, _, _) = request(
        addr,
        "POST",
        "/v1/chat/completions",
        &chat_body("hi", 2, false).to_string().replace("tiny", "smollm2"),
        &[],
    );
    assert_eq!(s, 200);
}

/// A gray PNG as base64.
fn png_base64() -> String {
    use base64::Engine as _;
    let bytes = std::fs::read(fixture().join("../../image/gray.png")).unwrap();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A tiny Braid model directory: a ViT image slot (with its preprocessing) and an MLP
/// projector in front of the tiny Qwen2.
fn tiny_pipeline(dir: &std::path::Path) {
    let toml = format!(
        r#"llm = {:?}
[[encoders]]
modality = "image"
[encoders.encoder]
type = "vit"
feature_layer = -1
vit = {{ hidden_size = 16, intermediate_size = 24, num_hidden_layers = 1, num_attention_heads = 2, image_size = 16, patch_size = 8 }}
[encoders.projector]
type = "mlp"
[encoders.preprocess]
type = "image"
resize = {{ height = 16, width = 16 }}
image_mean = [0.5, 0.5, 0.5]
image_std = [0.5, 0.5, 0.5]
"#,
        fixture().canonicalize().unwrap().display().to_string()
    );
    let path = dir.join("pipeline.toml");
    std::fs::write(&path, toml).unwrap();
    let cfg = braid_pipeline::PipelineConfig::load(&path).unwrap();
    let p = braid_pipeline::Pipeline::init(&cfg, dir, &Device::Cpu).unwrap();
    p.save(dir).unwrap();
}

/// What the pipeline `p` answers to `question` about `inputs`, run directly (greedy).
fn direct_answer(
    p: &braid_pipeline::Pipeline,
    question: &str,
    inputs: &[braid_pipeline::Input],
    max: usize,
) -> String {
    let prompter = p.prompter().unwrap();
    let kinds: Vec<_> = inputs.iter().map(|i| i.modality).collect();
    let msgs = braid_pipeline::place_media(&[Message::new("user", question)], &kinds);
    let ids = prompter.prompt_ids(&msgs).unwrap();
    let embeds = p.embed_prompt(&ids, inputs).unwrap();
    let cfg = GenerateConfig { max_new_tokens: max, ..Default::default() };
    let (g, _) = braid_llm::generate::generate_embeds(
        p.llm().unwrap(),
        prompter.tokenizer(),
        &embeds,
        None,
        &[ids],
        &cfg,
        &mut |_, _| Ok(()),
    )
    .unwrap();
    g[0].text.clone()
}

/// What the pipeline in `dir` answers about `images` copies of the gray PNG file.
fn pipeline_answer(dir: &std::path::Path, question: &str, images: usize, max: usize) -> String {
    let p = braid_pipeline::Pipeline::open(dir, FROZEN, &Device::Cpu).unwrap();
    let file = fixture().join("../../image/gray.png");
    let inputs: Vec<_> =
        (0..images).map(|_| p.load_input(braid_core::Modality::Image, &file).unwrap()).collect();
    direct_answer(&p, question, &inputs, max)
}

fn image_request(question: &str, images: usize, max: usize, stream: bool) -> Value {
    let mut content = vec![json!({"type": "text", "text": question})];
    for _ in 0..images {
        let url = format!("data:image/png;base64,{}", png_base64());
        content.push(json!({"type": "image_url", "image_url": {"url": url}}));
    }
    json!({"model": "tiny-vlm", "messages": [{"role": "user", "content": content}], "max_tokens": max, "stream": stream})
}

/// 16 streaming requests carrying 0 to 3 images each, all at once: every one completes with
/// the answer a one-at-a-time run gives; images for a slot the model lacks, or sent as a
/// path, are refused.
#[test]
fn concurrent_streams_with_different_numbers_of_images() {
    let dir = tempfile::tempdir().unwrap();
    tiny_pipeline(dir.path());
    let chat = ChatModel::open(dir.path(), &Device::Cpu).unwrap();
    let addr = start(Models { chat, chat_id: "tiny-vlm".into(), embedder: None }, config());
    let cases: Vec<(String, usize)> =
        (0..8).map(|i| (format!("What is in picture {i}?"), i % 4)).collect();
    let want: Vec<String> =
        cases.iter().map(|(q, n)| pipeline_answer(dir.path(), q, *n, 8)).collect();
    let handles: Vec<_> = cases
        .iter()
        .map(|(q, n)| {
            let body = image_request(q, *n, 8, true).to_string();
            std::thread::spawn(move || request(addr, "POST", "/v1/chat/completions", &body, &[]))
        })
        .collect();
    for ((h, w), (q, n)) in handles.into_iter().zip(&want).zip(&cases) {
        let (status, _, raw) = h.join().unwrap();
        assert_eq!(status, 200, "{raw}");
        let ev = events(&raw);
        assert_eq!(ev.last().map(String::as_str), Some("[DONE]"));
        let text: String = ev[..ev.len() - 1]
            .iter()
            .map(|e| serde_json::from_str::<Value>(e).unwrap())
            .filter_map(|c| c["choices"][0]["delta"]["content"].as_str().map(str::to_string))
            .collect();
        assert_eq!(&text, w, "{q} with {n} images");
    }
    let path = json!({"model": "tiny-vlm", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "file:///etc/passwd"}}]}]});
    let (s, b) = post(addr, "/v1/chat/completions", &path);
    assert!(s == 400 && b["error"]["message"].as_str().unwrap().contains("not fetched"), "{b}");
    // An image over the pixel budget (a 20000 x 20000 PNG of 69 bytes): refused unread.
    use base64::Engine as _;
    let bomb = std::fs::read(fixture().join("../../image/bomb_20000x20000.png")).unwrap();
    let url =
        format!("data:image/png;base64,{}", base64::engine::general_purpose::STANDARD.encode(bomb));
    let big = json!({"model": "tiny-vlm", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": url}}]}]});
    let (s, b) = post(addr, "/v1/chat/completions", &big);
    let msg = b["error"]["message"].as_str().unwrap_or_default();
    assert!(
        s == 400 && msg.contains("decompression-bomb") && msg.contains("BRAID_MAX_PIXELS"),
        "{b}"
    );
    let junk = json!({"model": "tiny-vlm", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,aGVsbG8="}}]}]});
    let (s, b) = post(addr, "/v1/chat/completions", &junk);
    assert!(
        s == 400 && b["error"]["message"].as_str().unwrap().contains("not a recognised image"),
        "{b}"
    );
    let audio = json!({"model": "tiny-vlm", "messages": [{"role": "user", "content": [
        {"type": "input_audio", "input_audio": {"data": "AA==", "format": "wav"}}]}]});
    let (s, _) = post(addr, "/v1/chat/completions", &audio);
    assert_eq!(s, 400);
}

/// A Braid model directory with image, audio and IMU slots over the tiny Qwen2.
fn media_pipeline(dir: &std::path::Path) {
    let toml = format!(
        r#"llm = {:?}
[[encoders]]
modality = "image"
[encoders.encoder]
type = "vit"
vit = {{ hidden_size = 16, intermediate_size = 24, num_hidden_layers = 1, num_attention_heads = 2, image_size = 16, patch_size = 8 }}
[encoders.preprocess]
type = "image"
resize = {{ height = 16, width = 16 }}
image_mean = [0.5, 0.5, 0.5]
image_std = [0.5, 0.5, 0.5]
[[encoders]]
modality = "audio"
[encoders.encoder]
type = "spectrogram_patch"
mels = 16
patch_size = 8
stride = 8
transformer = {{ hidden_size = 16, intermediate_size = 24, num_layers = 1, num_heads = 2, max_positions = 64 }}
[encoders.preprocess]
type = "audio"
max_seconds = 0.5
mels = 16
trim = true
[[encoders]]
modality = "imu"
[encoders.encoder]
type = "imu_patch"
channels = 3
patch_size = 8
stride = 8
transformer = {{ hidden_size = 16, intermediate_size = 24, num_layers = 1, num_heads = 2, max_positions = 16 }}
[encoders.preprocess]
type = "imu"
channels = ["ax", "ay", "az"]
mean = [0.0, 0.0, 9.8]
std = [1.0, 1.0, 1.0]
rate_hz = 50.0
"#,
        fixture().canonicalize().unwrap().display().to_string()
    );
    let path = dir.join("pipeline.toml");
    std::fs::write(&path, toml).unwrap();
    let cfg = braid_pipeline::PipelineConfig::load(&path).unwrap();
    braid_pipeline::Pipeline::init_seeded(&cfg, dir, &Device::Cpu, 7).unwrap().save(dir).unwrap();
}

/// An image, a spoken clip (base64 WAV) and an IMU recording (Braid's `input_imu` rows)
/// in one request answer as the pipeline answers the same files run directly; a
/// recording of the wrong channel count or rate is refused naming the part.
#[test]
fn image_audio_and_imu_parts_answer_as_the_files_do() {
    use base64::Engine as _;
    use braid_core::Modality;
    let dir = tempfile::tempdir().unwrap();
    media_pipeline(dir.path());
    let wav = fixture().join("../../audio/speech_16k.wav");
    let png = fixture().join("../../image/gray.png");
    let rows: Vec<Vec<f32>> = (0..64)
        .map(|i| (0..3).map(|c| ((i * (c + 1)) as f32 * 0.02).sin() + 0.5).collect())
        .collect();
    let csv = dir.path().join("rec.csv");
    let mut text = String::from("ax,ay,az\n");
    for r in &rows {
        text += &format!("{},{},{}\n", r[0], r[1], r[2]);
    }
    std::fs::write(&csv, text).unwrap();
    // Direct: the files through the pipeline.
    let want = {
        let p = braid_pipeline::Pipeline::open(dir.path(), FROZEN, &Device::Cpu).unwrap();
        let inputs = vec![
            p.load_input(Modality::Image, &png).unwrap(),
            p.load_input(Modality::Audio, &wav).unwrap(),
            p.load_input(Modality::Imu, &csv).unwrap(),
        ];
        let rows_input = p.load_imu_rows(&rows, Some(50.0), std::path::Path::new("rows")).unwrap();
        let d = (rows_input.data - &inputs[2].data).unwrap().abs().unwrap().max_all().unwrap();
        assert!(d.to_scalar::<f32>().unwrap() < 1e-6, "rows vs CSV");
        direct_answer(&p, "what happens?", &inputs, 8)
    };
    let chat = ChatModel::open(dir.path(), &Device::Cpu).unwrap();
    let addr = start(Models { chat, chat_id: "m".into(), embedder: None }, config());
    let b64 = |p: &std::path::Path| {
        base64::engine::general_purpose::STANDARD.encode(std::fs::read(p).unwrap())
    };
    let body = |imu: Value| {
        json!({"model": "m", "max_tokens": 8, "messages": [{"role": "user", "content": [
            {"type": "text", "text": "what happens?"},
            {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{}", b64(&png))}},
            {"type": "input_audio", "input_audio": {"data": b64(&wav), "format": "wav"}},
            {"type": "input_imu", "input_imu": imu}]}]})
    };
    let (s, b) = post(addr, "/v1/chat/completions", &body(json!({"rows": rows, "rate_hz": 50.0})));
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["choices"][0]["message"]["content"], want.as_str());
    let four: Vec<Vec<f32>> = rows.iter().map(|r| [r.as_slice(), &[0.0]].concat()).collect();
    let (s, b) = post(addr, "/v1/chat/completions", &body(json!({"rows": four})));
    let msg = b["error"]["message"].as_str().unwrap_or_default();
    assert!(s == 400 && msg.contains("content[3] (input_imu)") && msg.contains("4 values"), "{b}");
    let (s, b) = post(addr, "/v1/chat/completions", &body(json!({"rows": rows, "rate_hz": 100.0})));
    let msg = b["error"]["message"].as_str().unwrap_or_default();
    assert!(s == 400 && msg.contains("100 Hz") && msg.contains("50 Hz"), "{b}");
}
