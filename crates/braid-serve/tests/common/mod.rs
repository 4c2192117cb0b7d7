//! Helpers of the HTTP tests: a server on a free loopback port in its own thread, a plain
//! HTTP/1.1 client, the tiny Qwen2 fixture and direct runs to compare with.
#![allow(clippy::unwrap_used, clippy::panic, dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;

use braid_llm::generate::{generate, GenerateConfig};
use braid_llm::{Message, TextModel, Weights};
use braid_serve::{ChatModel, Engine, Models, ServeConfig, Server};
use candle_core::Device;
use serde_json::{json, Value};

pub fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/llm/qwen2_chat_tiny")
}

pub const FROZEN: Weights = Weights::Frozen { dequantize: false };

/// Starts a server for `models` on a free loopback port, in its own thread.
pub fn start(models: Models, cfg: ServeConfig) -> SocketAddr {
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

pub fn config() -> ServeConfig {
    ServeConfig { addr: SocketAddr::from(([127, 0, 0, 1], 0)), ..ServeConfig::default() }
}

pub fn tiny() -> Models {
    let text = TextModel::load(&fixture(), FROZEN, &Device::Cpu).unwrap();
    Models { chat: ChatModel::text(text).unwrap(), chat_id: "tiny".into(), embedder: None }
}

/// One HTTP/1.1 request: status, headers (lower-case names) and body.
pub fn request(
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
pub fn dechunk(mut rest: &str) -> String {
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

pub fn post(addr: SocketAddr, path: &str, body: &Value) -> (u16, Value) {
    let (status, _, body) = request(addr, "POST", path, &body.to_string(), &[]);
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

/// The greedy answer `generate` gives for `question` run directly.
pub fn direct(question: &str, max: usize) -> String {
    let tm = TextModel::load(&fixture(), FROZEN, &Device::Cpu).unwrap();
    let prompt =
        tm.chat_template().unwrap().render(&[Message::new("user", question)], true).unwrap();
    let ids = tm.tokenizer.encode(&prompt, false).unwrap();
    let cfg = GenerateConfig { max_new_tokens: max, ..Default::default() };
    let (g, _) =
        generate(&tm.model, &tm.tokenizer, &[ids], &cfg, &Device::Cpu, &mut |_, _| Ok(())).unwrap();
    g[0].text.clone()
}

pub fn chat_body(question: &str, max: usize, stream: bool) -> Value {
    json!({"model": "tiny", "messages": [{"role": "user", "content": question}], "max_tokens": max, "stream": stream})
}

/// The `data:` payloads of a server-sent event stream.
pub fn events(body: &str) -> Vec<String> {
    body.lines().filter_map(|l| l.strip_prefix("data: ")).map(str::to_string).collect()
}

/// A gray PNG as base64.
pub fn png_base64() -> String {
    use base64::Engine as _;
    let bytes = std::fs::read(fixture().join("../../image/gray.png")).unwrap();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
