//! MP4, WebM and every other container the system's `ffmpeg` reads: frames come back as a
//! stream of binary PPM images (`-f image2pipe -c:v ppm`), the frame rate from ffmpeg's
//! description of the input stream. Without `ffmpeg` on the PATH this is a clear error;
//! frame folders and GIFs need no ffmpeg. The stream is read frame by frame, each frame
//! checked against the decode budget ([`DecodeBudget`]) from its header before its pixels
//! are read, and ffmpeg is stopped once the budget is spent.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use braid_core::{Error, Result};
use image::RgbImage;

use super::budget::DecodeBudget;

/// How much of ffmpeg's log is kept: its start (the stream description) and its end (the
/// reason it failed).
const LOG_HEAD: usize = 64 << 10;
const LOG_TAIL: usize = 4 << 10;

/// Decodes every frame of `path` with the `ffmpeg` binary `ffmpeg` -> (RGB frames, fps).
pub fn decode_with_ffmpeg(path: &Path, ffmpeg: &Path) -> Result<(Vec<RgbImage>, Option<f64>)> {
    decode_within(path, ffmpeg, &mut DecodeBudget::default())
}

fn decode_within(
    path: &Path,
    ffmpeg: &Path,
    budget: &mut DecodeBudget,
) -> Result<(Vec<RgbImage>, Option<f64>)> {
    if !path.is_file() {
        return Err(Error::io(path, std::io::Error::from(std::io::ErrorKind::NotFound)));
    }
    let mut child = Command::new(ffmpeg)
        .args(["-hide_banner", "-nostdin", "-i"])
        .arg(path)
        // Accurate rounding and full chroma interpolation halve the YUV -> RGB error
        // (mean 3.0 -> 1.6 levels on flat easy-VQA-like frames).
        .args(["-sws_flags", "accurate_rnd+full_chroma_int"])
        .args(["-f", "image2pipe", "-c:v", "ppm", "-pix_fmt", "rgb24", "-"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::Invalid(format!(
                "`{}` not found: reading {} needs ffmpeg (apt-get install ffmpeg); frame folders and GIFs do not",
                ffmpeg.display(),
                path.display()
            )),
            _ => Error::io(ffmpeg, e),
        })?;
    // The log is drained beside the frames: a full stderr pipe would stall ffmpeg.
    let log = child.stderr.take().map(|err| std::thread::spawn(move || read_log(err)));
    let frames = match child.stdout.take() {
        Some(out) => read_ppm_stream(BufReader::new(out), budget),
        None => Err("ffmpeg gave no output stream".to_string()),
    };
    let status = finish(&mut child, frames.is_err()).map_err(|e| Error::io(ffmpeg, e))?;
    let log = log.and_then(|t| t.join().ok()).unwrap_or_default();
    // ffmpeg's own failure explains a cut stream better than the cut does; a stream
    // refused here (ffmpeg then stopped by a signal, no exit code) is the refusal.
    let frames = match frames {
        Err(m) if status.success() || status.code().is_none() => {
            return Err(Error::format(path, m))
        }
        _ if !status.success() => {
            let last = log.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no message");
            return Err(Error::format(path, format!("ffmpeg could not decode it: {last}")));
        }
        frames => frames.map_err(|m| Error::format(path, m))?,
    };
    if frames.is_empty() {
        return Err(Error::format(path, "ffmpeg decoded no video frames"));
    }
    Ok((frames, stream_fps(&log)))
}

/// Waits for ffmpeg, stopping it first when the frames were refused (it may still be
/// writing).
fn finish(child: &mut Child, stop: bool) -> std::io::Result<std::process::ExitStatus> {
    if stop {
        let _ = child.kill();
    }
    child.wait()
}

/// ffmpeg's log, its first [`LOG_HEAD`] and last [`LOG_TAIL`] bytes.
fn read_log(mut err: impl Read) -> String {
    let (mut head, mut tail, mut buf) = (Vec::new(), Vec::new(), [0u8; 8192]);
    loop {
        let n = match err.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let room = LOG_HEAD.saturating_sub(head.len()).min(n);
        head.extend_from_slice(&buf[..room]);
        tail.extend_from_slice(&buf[room..n]);
        if tail.len() > 2 * LOG_TAIL {
            tail.drain(..tail.len() - LOG_TAIL);
        }
    }
    head.push(b'\n');
    head.extend_from_slice(&tail);
    String::from_utf8_lossy(&head).into_owned()
}

/// The `NN fps` of the first video stream ffmpeg describes.
fn stream_fps(log: &str) -> Option<f64> {
    let line = log.lines().find(|l| l.contains("Video:"))?;
    line.split(", ").find_map(|part| part.trim().strip_suffix(" fps")?.parse().ok())
}

/// Concatenated binary PPMs (`P6 W H 255\n` + W*H*3 bytes each), read one frame at a
/// time; each header is checked against `budget` before its pixels are allocated.
fn read_ppm_stream(
    mut r: impl BufRead,
    budget: &mut DecodeBudget,
) -> std::result::Result<Vec<RgbImage>, String> {
    let mut frames = Vec::new();
    loop {
        let at = frames.len();
        let read_err = |e: std::io::Error| format!("frame {at}: reading ffmpeg's output: {e}");
        if r.fill_buf().map_err(read_err)?.is_empty() {
            return Ok(frames);
        }
        let mut fields = Vec::with_capacity(4);
        while fields.len() < 4 {
            match header_field(&mut r).map_err(read_err)? {
                Some(f) => fields.push(f),
                None => return Err(format!("frame {at}: truncated PPM header")),
            }
        }
        if fields[0] != "P6" || fields[3] != "255" {
            return Err(format!(
                "frame {at}: expected an 8-bit P6 PPM, got {} / {}",
                fields[0], fields[3]
            ));
        }
        let parse = |s: &str| {
            s.parse::<u32>().map_err(|_| format!("frame {at}: bad PPM header field `{s}`"))
        };
        let (w, h) = (parse(&fields[1])?, parse(&fields[2])?);
        budget.add(w, h).map_err(|m| format!("frame {at}: {m}"))?;
        // Within the pixel budget, so this fits usize.
        let len = w as usize * h as usize * 3;
        let mut data = Vec::new();
        (&mut r).take(len as u64).read_to_end(&mut data).map_err(read_err)?;
        if data.len() != len {
            return Err(format!("frame {at}: truncated pixels"));
        }
        frames.push(RgbImage::from_raw(w, h, data).ok_or("bad frame size")?);
    }
}

/// One whitespace-separated PPM header field and the single whitespace byte after it;
/// `None` at the end of the stream. A field is at most 20 bytes.
fn header_field(r: &mut impl BufRead) -> std::io::Result<Option<String>> {
    let mut field = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        if r.read(&mut byte)? == 0 {
            return Ok(None);
        }
        match (byte[0].is_ascii_whitespace(), field.is_empty()) {
            (true, true) => continue,
            (true, false) => return Ok(Some(String::from_utf8_lossy(&field).into_owned())),
            (false, _) if field.len() >= 20 => {
                return Ok(Some(String::from_utf8_lossy(&field).into_owned()))
            }
            (false, _) => field.push(byte[0]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_ppm_stream_and_the_frame_rate() {
        let mut s = b"P6\n2 1\n255\n".to_vec();
        s.extend_from_slice(&[1, 2, 3, 4, 5, 6]);
        s.extend_from_slice(b"P6\n1 1\n255\n");
        s.extend_from_slice(&[7, 8, 9]);
        let parse = |s: &[u8]| read_ppm_stream(s, &mut DecodeBudget::default());
        let f = parse(&s).unwrap();
        assert_eq!(
            (f.len(), f[0].get_pixel(1, 0).0, f[1].get_pixel(0, 0).0),
            (2, [4, 5, 6], [7, 8, 9])
        );
        assert!(parse(&s[..s.len() - 1]).unwrap_err().contains("truncated pixels"));
        assert!(parse(&s[..19]).unwrap_err().contains("frame 1: truncated PPM header"));
        assert!(parse(b"P6\n2 x 255\n").unwrap_err().contains("bad PPM header field `x`"));
        let log = "  Stream #0:0(und): Video: h264 (High), yuv420p(progressive), 64x64, 12 kb/s, 12.5 fps, 12.5 tbr";
        assert_eq!(stream_fps(log), Some(12.5));
    }

    #[test]
    fn a_missing_ffmpeg_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let clip = dir.path().join("clip.mp4");
        std::fs::write(&clip, b"not really").unwrap();
        let e =
            decode_with_ffmpeg(&clip, Path::new("/nonexistent/ffmpeg")).unwrap_err().to_string();
        assert!(
            e.contains("`/nonexistent/ffmpeg` not found: reading") && e.contains("needs ffmpeg"),
            "{e}"
        );
    }

    /// A stand-in for ffmpeg: a shell script printing `body`, whatever its arguments.
    #[cfg(unix)]
    fn fake_ffmpeg(dir: &Path, body: &str) -> std::path::PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let exe = dir.join("ffmpeg");
        std::fs::write(&exe, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        exe
    }

    /// ffmpeg writing frames without end (or one frame claiming 65535x65535) is stopped at
    /// the decode budget, frame by frame, instead of read whole into memory.
    #[cfg(unix)]
    #[test]
    fn alloc_ffmpeg_output_over_budget() {
        use braid_core::limits::Limit;
        let dir = tempfile::tempdir().unwrap();
        let clip = dir.path().join("clip.mp4");
        std::fs::write(&clip, b"not really").unwrap();
        let endless = fake_ffmpeg(
            dir.path(),
            "echo 'Stream #0:0: Video: h264, 4x4, 25 fps' >&2\n\
             while :; do printf 'P6\\n4 4\\n255\\n'; head -c 48 /dev/zero; done",
        );
        let mut budget = DecodeBudget::new(
            Limit::new("BRAID_TEST_UNSET_FRAMES", 200, "frames"),
            Limit::new("BRAID_TEST_UNSET_PIXELS", 1 << 30, "pixels"),
        );
        let e = decode_within(&clip, &endless, &mut budget).unwrap_err().to_string();
        assert!(
            e.contains("clip.mp4")
                && e.contains("holding 201 decoded frames needs 201 frames")
                && e.contains("BRAID_TEST_UNSET_FRAMES"),
            "{e}"
        );
        let huge =
            fake_ffmpeg(dir.path(), "printf 'P6\\n65535 65535\\n255\\n'; exec cat /dev/zero");
        let e = decode_with_ffmpeg(&clip, &huge).unwrap_err().to_string();
        assert!(
            e.contains("clip.mp4: frame 0: a 65535x65535 frame") && e.contains("BRAID_MAX_PIXELS"),
            "{e}"
        );
        // ffmpeg's own failure is reported as such, with the last line of its log.
        let failing = fake_ffmpeg(dir.path(), "echo 'clip.mp4: Invalid data found' >&2; exit 1");
        let e = decode_with_ffmpeg(&clip, &failing).unwrap_err().to_string();
        assert!(e.contains("ffmpeg could not decode it: clip.mp4: Invalid data found"), "{e}");
        // A good stream with its frame rate.
        let good = fake_ffmpeg(
            dir.path(),
            "echo 'Stream #0:0: Video: h264, 1x1, 12.5 fps' >&2; printf 'P6\\n1 1\\n255\\nabc'",
        );
        let (frames, fps) = decode_with_ffmpeg(&clip, &good).unwrap();
        assert_eq!((frames.len(), frames[0].get_pixel(0, 0).0, fps), (1, *b"abc", Some(12.5)));
    }
}
