//! `braid-serve` driven over real HTTP on loopback, with a plain TCP client (what any
//! OpenAI client sends): chat whole and streamed against `generate` run directly,
//! concurrent requests decoded together giving the answers of one-at-a-time runs,
//! completions, models, health, and the errors (malformed body, unknown field, unknown
//! model, media for a text model, too many tokens, too large a body, wrong key, a past
//! deadline). The tiny Qwen2 fixture needs nothing fetched; SmolLM2 and MiniLM
//! (`braid fetch`) add the embeddings, a full queue and a request joining a running batch.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use braid_llm::TextModel;
use braid_serve::{ChatModel, Limits, Models, ServeConfig};
use candle_core::Device;
use common::*;
use serde_json::{json, Value};

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
