//! `braid serve` as users start it (issue 16): the committed easy-VQA model directory and
//! SmolLM2 behind the HTTP API answer as `braid chat` answers, with an image sent as a
//! `data:` URI; MiniLM's embeddings equal `braid embed text`'s; SIGTERM stops the server.
//! They need `braid fetch easy-vqa smollm2 minilm`;
//! without them they skip, unless BRAID_REQUIRE_ASSETS=1 (CI), which makes them fail.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};

use common::{braid, fetched, root};

/// A running `braid serve` and its address.
struct Serve {
    child: Child,
    addr: String,
}

impl Serve {
    fn start(model: &str) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_braid"))
            .args(["serve", "--model", model, "--port", "0"])
            .current_dir(root())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let addr = serving_addr(&mut child);
        Self { child, addr }
    }

    /// POSTs `body` to `path`: the status and the JSON answer.
    fn post(&self, path: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
        let raw = self.exchange(path, body);
        let (head, rest) = raw.split_once("\r\n\r\n").unwrap();
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        (status, serde_json::from_str(rest).unwrap_or(serde_json::Value::Null))
    }

    /// POSTs `body` to `path`: the raw body (a chunked stream's chunks as they came).
    fn post_raw(&self, path: &str, body: &serde_json::Value) -> String {
        let raw = self.exchange(path, body);
        raw.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default()
    }

    fn exchange(&self, path: &str, body: &serde_json::Value) -> String {
        let body = body.to_string();
        let mut s = TcpStream::connect(&self.addr).unwrap();
        write!(s, "POST {path} HTTP/1.1\r\nhost: {}\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}", self.addr, body.len()).unwrap();
        let mut raw = String::new();
        s.read_to_string(&mut raw).unwrap();
        raw
    }

    /// SIGTERM, then the exit status must be a clean one.
    fn stop(mut self) {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "braid serve after SIGTERM: {status}");
    }
}

/// Reads a starting `braid serve`'s stderr up to the address it serves on (the rest is
/// drained in the background).
fn serving_addr(child: &mut Child) -> String {
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("braid serve ended before serving").unwrap();
        if let Some(rest) = line.strip_prefix("serving on http://") {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    std::thread::spawn(move || lines.for_each(drop));
    addr
}

fn reply(body: &serde_json::Value) -> String {
    body["choices"][0]["message"]["content"].as_str().unwrap_or_default().trim().to_string()
}

#[test]
fn served_answers_equal_braid_chat() {
    if !["easy-vqa", "smollm2", "minilm"].iter().all(|n| fetched(n)) {
        eprintln!("skipping: run `braid fetch easy-vqa smollm2 minilm`");
        return;
    }
    use base64::Engine as _;
    let image = braid_hub::entry_dir(braid_hub::find("easy-vqa").unwrap(), &braid_hub::home())
        .join("test/images/7.png");
    let url = format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(std::fs::read(&image).unwrap())
    );
    let q = "what color is the shape?";
    let serve = Serve::start("models/easyvqa");
    let body = serde_json::json!({"model": "models/easyvqa", "max_tokens": 4, "messages": [{"role": "user", "content": [
        {"type": "text", "text": q}, {"type": "image_url", "image_url": {"url": url}}]}]});
    let (status, answer) = serve.post("/v1/chat/completions", &body);
    assert_eq!(status, 200, "{answer}");
    serve.stop();
    let chat = braid(&[
        "chat",
        "--model",
        "models/easyvqa",
        "--image",
        image.to_str().unwrap(),
        "--max-tokens",
        "4",
        q,
    ]);
    let want = String::from_utf8_lossy(&chat.stdout).trim().to_string();
    assert_eq!(reply(&answer), want);
    assert!(want.to_lowercase().contains("green"), "{want}");

    // Embeddings over HTTP equal `braid embed text`'s within 1e-6.
    let dir = tempfile::tempdir().unwrap();
    let texts =
        ["The wearable records acceleration.", "Sitting, then standing up.", "A spoken seven."];
    let input = dir.path().join("t.txt");
    std::fs::write(&input, texts.join("\n")).unwrap();
    let out = dir.path().join("e.npy");
    braid(&[
        "embed",
        "text",
        "--model",
        "minilm",
        "--input",
        input.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let want = braid_core::checkpoint::read_npy(&out)
        .unwrap()
        .to_tensor(&candle_core::Device::Cpu)
        .unwrap();
    let want: Vec<Vec<f32>> = want.to_vec2().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_braid"))
        .args(["serve", "--model", "smollm2", "--embed-model", "minilm", "--port", "0"])
        .current_dir(root())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let addr = serving_addr(&mut child);
    let serve = Serve { child, addr };
    let (status, body) =
        serve.post("/v1/embeddings", &serde_json::json!({"model": "minilm", "input": texts}));
    assert_eq!(status, 200, "{body}");
    for (i, w) in want.iter().enumerate() {
        let got: Vec<f32> = serde_json::from_value(body["data"][i]["embedding"].clone()).unwrap();
        let d = got.iter().zip(w).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(got.len() == w.len() && d <= 1e-6, "text {i}: {d}");
    }
    serve.stop();

    let serve = Serve::start("smollm2");
    let q = "What is an accelerometer?";
    let body = serde_json::json!({"model": "smollm2", "max_tokens": 24, "messages": [{"role": "user", "content": q}]});
    let (status, answer) = serve.post("/v1/chat/completions", &body);
    assert_eq!(status, 200, "{answer}");
    // Streamed: the deltas join into the same answer, then [DONE].
    let mut stream = body.clone();
    stream["stream"] = serde_json::json!(true);
    let raw = serve.post_raw("/v1/chat/completions", &stream);
    let data: Vec<&str> = raw.lines().filter_map(|l| l.strip_prefix("data: ")).collect();
    assert_eq!(data.last(), Some(&"[DONE]"), "{raw}");
    let streamed: String = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str::<serde_json::Value>(d).unwrap())
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str().map(str::to_string))
        .collect();
    assert_eq!(streamed.trim(), reply(&answer));
    serve.stop();
    let chat = braid(&["chat", "--model", "smollm2", "--max-tokens", "24", q]);
    assert_eq!(reply(&answer), String::from_utf8_lossy(&chat.stdout).trim());
}
