//! Speech from an external engine: espeak-ng (Debian `espeak-ng`, GPL; installed by
//! `scripts/test.sh`, `apt-get install espeak-ng`), as NExT-GPT-style systems answer
//! aloud with a text-to-speech tool. The text goes in on stdin (never as an argument, so
//! no text is read as a flag), the WAV comes back on stdout and is resampled to 16 kHz;
//! a run past its time limit is killed.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use braid_core::{Error, Modality, Result};
use braid_data::audio::{decode_bytes, resample};
use candle_core::{Device, Tensor};

use crate::{GenerateOptions, Generator};

/// Output sample rate.
pub const SPEECH_RATE: u32 = 16_000;
/// Characters of text one call speaks at most.
pub const MAX_SPEECH_CHARS: usize = 4000;
/// How long one call may run.
const TIMEOUT: Duration = Duration::from_secs(60);

/// espeak-ng with a voice (`en-us`, `en-gb-scotland+f2`, ...) and a speed in words a minute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Espeak {
    voice: String,
    speed: u32,
}

impl Espeak {
    /// A voice name of letters, digits, `-`, `_` and `+` (variants), not starting with `-`;
    /// speed 80 to 450 words a minute.
    pub fn new(voice: &str, speed: u32) -> Result<Self> {
        let ok = !voice.is_empty()
            && voice.len() <= 64
            && !voice.starts_with('-')
            && voice.chars().all(|c| c.is_ascii_alphanumeric() || "-_+".contains(c));
        if !ok {
            return Err(Error::config(
                "voice",
                format!("{voice:?} is not an espeak-ng voice name"),
            ));
        }
        if !(80..=450).contains(&speed) {
            return Err(Error::config("speed", format!("{speed}: 80 to 450 words a minute")));
        }
        Ok(Self { voice: voice.to_string(), speed })
    }

    /// `espeak-ng` or `espeak-ng:VOICE` (what `braid draw --model` takes); None for any
    /// other name.
    pub fn from_model_name(name: &str) -> Option<Result<Self>> {
        let rest = name.strip_prefix("espeak-ng")?;
        Some(match rest.strip_prefix(':') {
            Some(voice) => Self::new(voice, 160),
            None if rest.is_empty() => Self::new("en-us", 160),
            None => return None,
        })
    }

    /// Text -> 16 kHz mono samples in [-1, 1].
    pub fn speak(&self, text: &str) -> Result<Vec<f32>> {
        if text.trim().is_empty() {
            return Err(Error::Invalid("nothing to say: the text is empty".into()));
        }
        if text.chars().count() > MAX_SPEECH_CHARS {
            return Err(Error::Invalid(format!(
                "the text has {} characters; espeak-ng is given at most {MAX_SPEECH_CHARS}",
                text.chars().count()
            )));
        }
        let mut child = Command::new("espeak-ng")
            .args(["-v", &self.voice, "-s", &self.speed.to_string(), "--stdout"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                Error::Invalid(format!("espeak-ng could not run ({e}): apt-get install espeak-ng"))
            })?;
        let mut stdin =
            child.stdin.take().ok_or_else(|| Error::Invalid("espeak-ng stdin".into()))?;
        // espeak-ng reads stdin to its end: the text, then close.
        stdin
            .write_all(text.as_bytes())
            .map_err(|e| Error::Invalid(format!("espeak-ng stdin: {e}")))?;
        drop(stdin);
        let mut stdout =
            child.stdout.take().ok_or_else(|| Error::Invalid("espeak-ng stdout".into()))?;
        let reader = std::thread::spawn(move || {
            let mut buf = Vec::new();
            stdout.read_to_end(&mut buf).map(|_| buf)
        });
        let started = Instant::now();
        let status = loop {
            match child.try_wait().map_err(|e| Error::Invalid(format!("espeak-ng: {e}")))? {
                Some(s) => break s,
                None if started.elapsed() > TIMEOUT => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(Error::Invalid(format!("espeak-ng ran past {TIMEOUT:?}: killed")));
                }
                None => std::thread::sleep(Duration::from_millis(5)),
            }
        };
        let bytes = reader
            .join()
            .map_err(|_| Error::Invalid("espeak-ng reader panicked".into()))?
            .map_err(|e| Error::Invalid(format!("espeak-ng stdout: {e}")))?;
        if !status.success() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            return Err(Error::Invalid(format!(
                "espeak-ng -v {} failed ({status}): {}",
                self.voice,
                err.trim()
            )));
        }
        let audio = decode_bytes(fix_stream_sizes(bytes), Path::new("espeak-ng stdout"))?;
        resample(&audio.to_mono(), audio.sample_rate, SPEECH_RATE)
    }
}

/// A WAV streamed to a pipe carries placeholder sizes (espeak-ng writes 0x7ffff000):
/// the RIFF and `data` sizes are set to what actually arrived.
fn fix_stream_sizes(mut b: Vec<u8>) -> Vec<u8> {
    if b.len() < 12 || &b[..4] != b"RIFF" {
        return b;
    }
    let riff = (b.len() - 8) as u32;
    b[4..8].copy_from_slice(&riff.to_le_bytes());
    let mut at = 12;
    while at + 8 <= b.len() {
        let size = u32::from_le_bytes([b[at + 4], b[at + 5], b[at + 6], b[at + 7]]) as usize;
        if &b[at..at + 4] == b"data" {
            let real = (b.len() - at - 8) as u32;
            b[at + 4..at + 8].copy_from_slice(&real.to_le_bytes());
            break;
        }
        at += 8 + size + size % 2;
    }
    b
}

impl Generator for Espeak {
    fn modality(&self) -> Modality {
        Modality::Audio
    }

    fn cond_dim(&self) -> usize {
        0
    }

    fn generate(&self, _cond: &Tensor, _opts: &GenerateOptions) -> Result<Tensor> {
        Err(Error::Invalid("espeak-ng speaks text: call generate_text".into()))
    }

    fn generate_text(&self, prompt: &str, _opts: &GenerateOptions) -> Result<Tensor> {
        let samples = self.speak(prompt)?;
        let n = samples.len();
        Ok(Tensor::from_vec(samples, (1, n), &Device::Cpu)?)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    fn have_espeak() -> bool {
        let ok = Command::new("espeak-ng").arg("--version").output().is_ok();
        if !ok && std::env::var("BRAID_REQUIRE_ASSETS").is_ok_and(|v| v == "1") {
            panic!("BRAID_REQUIRE_ASSETS=1 but espeak-ng is missing (apt-get install espeak-ng)");
        }
        ok
    }

    #[test]
    fn speaks_text_as_16_khz_audio_and_refuses_bad_voices() {
        assert!(Espeak::new("--help", 160).is_err());
        assert!(Espeak::new("en us", 160).is_err());
        assert!(Espeak::new("en-us", 20).is_err());
        assert!(Espeak::from_model_name("espeak-ngx").is_none());
        if !have_espeak() {
            eprintln!("note: skipping: espeak-ng is not installed");
            return;
        }
        let e = Espeak::from_model_name("espeak-ng:en-gb-scotland+f2").unwrap().unwrap();
        let seven = e.speak("seven").unwrap();
        let secs = seven.len() as f64 / f64::from(SPEECH_RATE);
        assert!((0.2..2.0).contains(&secs), "{secs} s");
        let peak = seven.iter().fold(0f32, |m, s| m.max(s.abs()));
        assert!(peak > 0.05 && peak <= 1.0, "{peak}");
        // Text that looks like a flag is spoken, not obeyed.
        assert!(!e.speak("-v nonsense").unwrap().is_empty());
        assert!(e.speak("  ").is_err());
        assert!(e.speak(&"a".repeat(MAX_SPEECH_CHARS + 1)).is_err());
        let bad = Espeak::new("zz-no-such-voice", 160).unwrap().speak("x").unwrap_err();
        assert!(bad.to_string().contains("zz-no-such-voice"), "{bad}");
    }
}
