//! Verified downloads. Bytes stream into `<file>.part` while being hashed; only a file
//! whose sha256 matches the pinned digest is renamed to its final name, so an interrupted
//! or corrupted transfer never leaves a file that looks complete. A rerun resumes a
//! `.part` with an HTTP `Range` request when the server allows it, else starts over.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use braid_core::{Error, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sha2::{Digest, Sha256};

use crate::http;

/// One file to download.
pub(crate) struct Download<'a> {
    /// Where from.
    pub url: &'a str,
    /// Final path.
    pub dest: &'a Path,
    /// Pinned sha256 (lowercase hex); `None` accepts any content.
    pub sha256: Option<&'a str>,
    /// Extra request headers (authorisation).
    pub headers: &'a [(&'a str, &'a str)],
    /// No progress bar.
    pub quiet: bool,
}

/// `path` with `.part` appended.
pub(crate) fn part_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".part");
    PathBuf::from(s)
}

/// The sha256 of a file, hex.
pub(crate) fn sha256_file(path: &Path) -> Result<String> {
    let mut f = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).map_err(|e| Error::io(path, e))?;
    Ok(hex::encode(h.finalize()))
}

/// Downloads unless `dest` already holds the pinned content; returns the digest.
pub(crate) fn fetch_file(agent: &ureq::Agent, d: &Download<'_>) -> Result<String> {
    if d.dest.is_file() {
        let got = sha256_file(d.dest)?;
        if d.sha256.is_none_or(|want| want == got) {
            return Ok(got);
        }
        fs::remove_file(d.dest).map_err(|e| Error::io(d.dest, e))?;
    }
    if let Some(dir) = d.dest.parent() {
        fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    let part = part_path(d.dest);
    let got = stream(agent, d, &part)?;
    if let Some(want) = d.sha256.filter(|want| *want != got) {
        // A wrong file is not worth resuming: the next run starts over.
        let _ = fs::remove_file(&part);
        return Err(Error::Checksum {
            path: d.dest.to_path_buf(),
            expected: want.to_string(),
            got,
        });
    }
    fs::rename(&part, d.dest).map_err(|e| Error::io(d.dest, e))?;
    Ok(got)
}

/// Streams the body into `part` (resuming it if possible); returns the digest of the
/// whole file.
fn stream(agent: &ureq::Agent, d: &Download<'_>, part: &Path) -> Result<String> {
    let have = fs::metadata(part).map(|m| m.len()).unwrap_or(0);
    let mut headers = d.headers.to_vec();
    let range = format!("bytes={have}-");
    if have > 0 {
        headers.push(("Range", &range));
    }
    let resp = match http::get(agent, d.url, &headers) {
        // 416: the `.part` is not a prefix the server recognises; start over.
        Err(Error::Network { msg, .. }) if have > 0 && msg.starts_with("HTTP 416") => {
            http::get(agent, d.url, d.headers)?
        }
        r => r?,
    };
    let expected_range = format!("bytes {have}-");
    let resp = if resp.status() == 206
        && !resp.header("Content-Range").is_none_or(|r| r.starts_with(&expected_range))
    {
        // A range other than the one asked for: distrust the `.part` and start over.
        http::get(agent, d.url, d.headers)?
    } else {
        resp
    };
    let resumed = have > 0 && resp.status() == 206;
    let mut hasher = Sha256::new();
    let mut file = if resumed {
        let mut f = File::open(part).map_err(|e| Error::io(part, e))?;
        std::io::copy(&mut f, &mut hasher).map_err(|e| Error::io(part, e))?;
        OpenOptions::new().append(true).open(part).map_err(|e| Error::io(part, e))?
    } else {
        File::create(part).map_err(|e| Error::io(part, e))?
    };
    let start = if resumed { have } else { 0 };
    let len = resp.header("Content-Length").and_then(|l| l.parse::<u64>().ok());
    let bar = progress(d, len.map(|l| l + start), start);
    let copied = copy(resp.into_reader(), &mut file, &mut hasher, &bar);
    bar.finish_and_clear();
    let n = copied.map_err(|e| interrupted(d, start + e.0, len.map(|l| l + start), &e.1))?;
    if let Some(l) = len.filter(|&l| l != n) {
        return Err(interrupted(d, start + n, Some(start + l), "connection closed early"));
    }
    file.sync_all().map_err(|e| Error::io(part, e))?;
    Ok(hex::encode(hasher.finalize()))
}

/// Copies until EOF; on error returns the bytes copied so far and the reason.
fn copy(
    mut r: impl Read,
    w: &mut File,
    h: &mut Sha256,
    bar: &ProgressBar,
) -> std::result::Result<u64, (u64, String)> {
    let mut buf = vec![0u8; 1 << 16];
    let mut n = 0u64;
    loop {
        let k = match r.read(&mut buf) {
            Ok(0) => return Ok(n),
            Ok(k) => k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err((n, e.to_string())),
        };
        w.write_all(&buf[..k]).map_err(|e| (n, e.to_string()))?;
        h.update(&buf[..k]);
        n += k as u64;
        bar.inc(k as u64);
    }
}

fn interrupted(d: &Download<'_>, got: u64, total: Option<u64>, why: &str) -> Error {
    let name = d.dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let of = total.map(|t| format!(" of {t}")).unwrap_or_default();
    Error::Network {
        url: d.url.to_string(),
        msg: format!("download of {name} interrupted after {got}{of} bytes ({why}); run the fetch again to resume"),
    }
}

fn progress(d: &Download<'_>, total: Option<u64>, start: u64) -> ProgressBar {
    if d.quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(total, ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template(
        "{msg} {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} {eta}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_message(
        d.dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
    );
    bar.set_position(start);
    bar
}
