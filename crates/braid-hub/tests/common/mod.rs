//! A tiny HTTP/1.1 server on 127.0.0.1 for offline fetch tests: fixed responses per path,
//! `Range: bytes=N-` support, and a switch to cut a body off half-way.

#![allow(dead_code, clippy::unwrap_used)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// One canned response.
#[derive(Clone)]
pub struct Reply {
    pub content_type: String,
    pub body: Vec<u8>,
    /// Announce the full length but close after this many bytes.
    pub cut_at: Option<usize>,
}

#[derive(Default)]
pub struct State {
    pub routes: HashMap<String, Reply>,
    /// Every request seen: (path, Range header).
    pub log: Vec<(String, Option<String>)>,
}

pub struct Server {
    pub base: String,
    pub state: Arc<Mutex<State>>,
}

impl Server {
    pub fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let _ = serve(stream, &shared);
            }
        });
        Server { base, state }
    }

    pub fn route(&self, path: &str, content_type: &str, body: Vec<u8>, cut_at: Option<usize>) {
        let reply = Reply { content_type: content_type.into(), body, cut_at };
        self.state.lock().unwrap().routes.insert(path.into(), reply);
    }

    pub fn log(&self) -> Vec<(String, Option<String>)> {
        self.state.lock().unwrap().log.clone()
    }
}

fn serve(stream: TcpStream, state: &Mutex<State>) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    let mut range = None;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h == "\r\n" {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("range") {
                range = Some(v.trim().to_string());
            }
        }
    }
    let reply = {
        let mut st = state.lock().unwrap();
        st.log.push((path.clone(), range.clone()));
        st.routes.get(&path).cloned()
    };
    let mut out = stream;
    let Some(r) = reply else {
        return out.write_all(
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
    };
    let start = range
        .and_then(|r| r.strip_prefix("bytes=")?.strip_suffix('-')?.parse::<usize>().ok())
        .filter(|&s| s < r.body.len());
    let total = r.body.len();
    let (status, body, range) = match start {
        Some(s) => (
            "206 Partial Content",
            &r.body[s..],
            format!("Content-Range: bytes {s}-{}/{total}\r\n", total - 1),
        ),
        None => ("200 OK", &r.body[..], String::new()),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {}\r\nContent-Length: {}\r\n{range}Connection: close\r\n\r\n",
        r.content_type,
        body.len()
    );
    out.write_all(head.as_bytes())?;
    let n = r.cut_at.map_or(body.len(), |c| c.min(body.len()));
    out.write_all(&body[..n])?;
    out.flush()
}
