//! Audio slots: a file (WAV, FLAC, OGG, MP3) decoded, mixed to mono, resampled to the
//! slot's rate and turned into Whisper's log-mel features
//! ([`braid_data::audio::WhisperFeatures`]), the input of
//! `braid_encoders::audio::SpectrogramPatchEncoder`: `[1, mels, frames]`, one frame per
//! `hop_length` samples.
//!
//! A clip shorter than `max_seconds` is padded with silence to `max_seconds` (unmasked, as
//! AST and OneLLM pad their spectrograms to a fixed length), so every clip gives the same
//! number of frames, or with `pad_to_max = false` keeps its own length. A longer clip is
//! refused, or with `trim = true` cut to its first `max_seconds`. A clip whose RMS is below
//! `silence_rms` is refused as silent (a muted microphone, a wrong channel).

use std::path::Path;

use braid_core::limits::AUDIO_SAMPLES;
use braid_core::{Error, Result};
use braid_data::audio::{
    decode_bytes, decode_file, resample, Audio, WhisperFeatures, WhisperFeaturesConfig,
    MAX_SAMPLE_RATE,
};
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

/// An audio slot's rate, log-mel settings and clip length.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AudioPreprocess {
    /// Samples per second the clip is resampled to.
    #[serde(default = "whisper_rate")]
    pub sample_rate: u32,
    /// Mel bins (the encoder's `mels`).
    #[serde(default = "ast_mels")]
    pub mels: usize,
    /// STFT size in samples (400: 25 ms at 16 kHz).
    #[serde(default = "whisper_n_fft")]
    pub n_fft: usize,
    /// Samples between frames (160: 10 ms at 16 kHz).
    #[serde(default = "whisper_hop")]
    pub hop_length: usize,
    /// Longest clip read, in seconds.
    pub max_seconds: f64,
    /// Pad shorter clips with silence to `max_seconds` (false: their own length).
    #[serde(default = "yes")]
    pub pad_to_max: bool,
    /// Cut longer clips to their first `max_seconds` (false: refuse them).
    #[serde(default)]
    pub trim: bool,
    /// RMS (samples in [-1, 1]) below which a clip is refused as silent (0: never).
    #[serde(default = "silence")]
    pub silence_rms: f32,
}

fn whisper_rate() -> u32 {
    16_000
}
fn ast_mels() -> usize {
    128
}
fn whisper_n_fft() -> usize {
    400
}
fn whisper_hop() -> usize {
    160
}
fn yes() -> bool {
    true
}
/// -80 dBFS: below the dither of 16-bit audio.
fn silence() -> f32 {
    1e-4
}

impl AudioPreprocess {
    /// OneLLM / AST settings (16 kHz, 128 mels, 25 ms windows every 10 ms) for clips of at
    /// most `max_seconds`, padded to it.
    pub fn new(max_seconds: f64) -> Self {
        Self {
            sample_rate: whisper_rate(),
            mels: ast_mels(),
            n_fft: whisper_n_fft(),
            hop_length: whisper_hop(),
            max_seconds,
            pad_to_max: true,
            trim: false,
            silence_rms: silence(),
        }
    }

    /// Samples of a clip of `max_seconds`.
    fn max_samples(&self) -> usize {
        (self.max_seconds * f64::from(self.sample_rate)).round() as usize
    }

    /// Checks every field, naming it.
    pub fn validate(&self) -> Result<()> {
        let field = |f: &str| format!("preprocess.{f}");
        if self.sample_rate == 0 || self.sample_rate > MAX_SAMPLE_RATE {
            return Err(Error::config(
                field("sample_rate"),
                format!("{} (must be in 1..={MAX_SAMPLE_RATE} Hz)", self.sample_rate),
            ));
        }
        if !(self.max_seconds.is_finite() && self.max_seconds > 0.0) {
            return Err(Error::config(
                field("max_seconds"),
                format!("{} (must be a number of seconds > 0)", self.max_seconds),
            ));
        }
        AUDIO_SAMPLES
            .check(
                self.max_samples() as u64,
                &format!("{} s at {} Hz", self.max_seconds, self.sample_rate),
            )
            .map_err(|m| Error::config(field("max_seconds"), m))?;
        if self.mels == 0 || self.n_fft < 2 || self.hop_length == 0 || self.hop_length > self.n_fft
        {
            return Err(Error::config(
                field("mels"),
                format!(
                    "mels {}, n_fft {}, hop_length {}: need mels >= 1, n_fft >= 2, 1 <= hop_length <= n_fft",
                    self.mels, self.n_fft, self.hop_length
                ),
            ));
        }
        if self.max_samples() < self.hop_length {
            return Err(Error::config(field("max_seconds"), "shorter than one frame"));
        }
        if !(self.silence_rms.is_finite() && self.silence_rms >= 0.0) {
            return Err(Error::config(field("silence_rms"), "must be a number >= 0"));
        }
        self.features(self.max_samples()).config().validate()
    }

    /// The feature extractor for a window of at least `samples` samples (Whisper's
    /// extractor pads to whole seconds; the frames past `samples` are cut off after).
    fn features(&self, samples: usize) -> WhisperFeatures {
        let rate = self.sample_rate as usize;
        WhisperFeatures::new(WhisperFeaturesConfig {
            feature_size: self.mels,
            sampling_rate: self.sample_rate,
            hop_length: self.hop_length,
            chunk_length: samples.div_ceil(rate.max(1)).max(1),
            n_fft: self.n_fft,
            padding_value: 0.0,
        })
    }

    /// The mono clip of `path` at `sample_rate`, checked for length and silence.
    fn samples(&self, audio: &Audio, path: &Path) -> Result<Vec<f32>> {
        let mut mono = audio.to_mono();
        let rate = f64::from(audio.sample_rate);
        let max = (self.max_seconds * rate).round() as usize;
        if mono.len() > max {
            if !self.trim {
                return Err(Error::format(
                    path,
                    format!(
                        "{:.2} s long, over the {} s this model reads (preprocess.max_seconds; `trim = true` cuts longer clips)",
                        audio.seconds(),
                        self.max_seconds
                    ),
                ));
            }
            mono.truncate(max);
        }
        let rms = (mono.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>()
            / mono.len().max(1) as f64)
            .sqrt();
        if rms < f64::from(self.silence_rms) {
            let level =
                if rms == 0.0 { "every sample is 0".into() } else { format!("RMS {rms:.1e}") };
            return Err(Error::format(
                path,
                format!("silent ({level}, below the slot's silence_rms of {:e})", self.silence_rms),
            ));
        }
        let mut out = resample(&mono, audio.sample_rate, self.sample_rate)
            .map_err(|e| Error::format(path, e.to_string()))?;
        out.truncate(self.max_samples());
        Ok(out)
    }

    /// The clip of `path` -> log-mel `[1, mels, frames]`: `max_seconds * sample_rate /
    /// hop_length` frames when padding, the clip's own number otherwise.
    pub fn load(&self, path: &Path, device: &Device) -> Result<Tensor> {
        self.features_of(&decode_file(path)?, path, device)
    }

    /// As [`Self::load`], for a clip held in memory (an upload); `name` stands for it in
    /// errors.
    pub fn load_bytes(&self, bytes: Vec<u8>, name: &Path, device: &Device) -> Result<Tensor> {
        self.features_of(&decode_bytes(bytes, name)?, name, device)
    }

    /// The log-mel features of decoded `audio` (named `path` in errors).
    fn features_of(&self, audio: &Audio, path: &Path, device: &Device) -> Result<Tensor> {
        self.validate()?;
        let clip = self.samples(audio, path)?;
        let n = if self.pad_to_max { self.max_samples() } else { clip.len() };
        let frames = n / self.hop_length;
        if frames == 0 {
            return Err(Error::format(
                path,
                format!(
                    "{} samples: shorter than one {}-sample frame",
                    clip.len(),
                    self.hop_length
                ),
            ));
        }
        let mel =
            self.features(n).extract(&clip).map_err(|e| Error::format(path, e.to_string()))?;
        Ok(mel.narrow(1, 0, frames)?.unsqueeze(0)?.to_device(device)?)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A mono 16-bit PCM WAV of `seconds` of a sine of `hz` at amplitude `amp`.
    pub(crate) fn sine_wav(path: &Path, rate: u32, seconds: f64, hz: f64, amp: f64) -> Result<()> {
        let n = (seconds * f64::from(rate)).round() as usize;
        let samples: Vec<f32> = (0..n)
            .map(|i| {
                (amp * (2.0 * std::f64::consts::PI * hz * i as f64 / f64::from(rate)).sin()) as f32
            })
            .collect();
        let b = braid_data::audio::encode_wav_pcm16(&samples, rate);
        std::fs::write(path, b).map_err(|e| Error::io(path, e))
    }

    fn tiny() -> AudioPreprocess {
        AudioPreprocess { mels: 16, ..AudioPreprocess::new(2.0) }
    }

    fn err(r: Result<Tensor>) -> String {
        r.err().map(|e| e.to_string()).unwrap_or_default()
    }

    /// The mel bin of the largest value in the middle frame.
    fn peak_bin(mel: &Tensor) -> Result<usize> {
        let frames = mel.dim(2)?;
        let col = mel.squeeze(0)?.narrow(1, frames / 2, 1)?.squeeze(1)?.to_vec1::<f32>()?;
        Ok(col.iter().enumerate().fold(0, |best, (i, v)| if *v > col[best] { i } else { best }))
    }

    #[test]
    fn a_clip_is_padded_to_the_slot_length_or_kept_at_its_own() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tmp", e))?;
        let path = dir.path().join("sine.wav");
        sine_wav(&path, 16_000, 1.0, 440.0, 0.5)?;
        let padded = tiny().load(&path, &Device::Cpu)?;
        assert_eq!(padded.dims(), &[1, 16, 200]);
        let own = AudioPreprocess { pad_to_max: false, ..tiny() }.load(&path, &Device::Cpu)?;
        assert_eq!(own.dims(), &[1, 16, 100]);
        // The clip's frames are the same either way (padding only follows it).
        let head = padded.narrow(2, 10, 80)?;
        let diff = (head - own.narrow(2, 10, 80)?)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(diff < 1e-4, "{diff}");
        Ok(())
    }

    #[test]
    fn another_rate_is_resampled_to_the_slots() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tmp", e))?;
        let (at_16k, at_44k) = (dir.path().join("a.wav"), dir.path().join("b.wav"));
        sine_wav(&at_16k, 16_000, 1.0, 1000.0, 0.5)?;
        sine_wav(&at_44k, 44_100, 1.0, 1000.0, 0.5)?;
        let p = AudioPreprocess { pad_to_max: false, ..tiny() };
        let (a, b) = (p.load(&at_16k, &Device::Cpu)?, p.load(&at_44k, &Device::Cpu)?);
        assert_eq!(a.dims(), b.dims());
        assert_eq!(peak_bin(&a)?, peak_bin(&b)?);
        let diff = (a - b)?.abs()?.narrow(2, 10, 80)?.max_all()?.to_scalar::<f32>()?;
        assert!(diff < 0.05, "{diff}");
        Ok(())
    }

    #[test]
    fn silent_too_long_and_unreadable_clips_name_the_file() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tmp", e))?;
        let quiet = dir.path().join("quiet.wav");
        sine_wav(&quiet, 16_000, 1.0, 440.0, 0.0)?;
        let e = err(tiny().load(&quiet, &Device::Cpu));
        assert!(e.contains("quiet.wav") && e.contains("silent"), "{e}");
        let long = dir.path().join("long.wav");
        sine_wav(&long, 8_000, 3.0, 440.0, 0.5)?;
        let e = err(tiny().load(&long, &Device::Cpu));
        assert!(e.contains("long.wav") && e.contains("3.00 s") && e.contains("max_seconds"), "{e}");
        let cut = AudioPreprocess { trim: true, ..tiny() }.load(&long, &Device::Cpu)?;
        assert_eq!(cut.dims(), &[1, 16, 200]);
        let junk = dir.path().join("junk.wav");
        std::fs::write(&junk, b"not audio").map_err(|e| Error::io(&junk, e))?;
        let e = err(tiny().load(&junk, &Device::Cpu));
        assert!(e.contains("junk.wav"), "{e}");
        let e = err(tiny().load(&dir.path().join("missing.wav"), &Device::Cpu));
        assert!(e.contains("missing.wav"), "{e}");
        Ok(())
    }

    #[test]
    fn bad_settings_name_the_field() {
        for (p, want) in [
            (AudioPreprocess { max_seconds: f64::NAN, ..tiny() }, "preprocess.max_seconds"),
            (AudioPreprocess { sample_rate: 0, ..tiny() }, "preprocess.sample_rate"),
            (AudioPreprocess { hop_length: 0, ..tiny() }, "preprocess.mels"),
            (AudioPreprocess { silence_rms: -1.0, ..tiny() }, "preprocess.silence_rms"),
        ] {
            let e = p.validate().err().map(|e| e.to_string()).unwrap_or_default();
            assert!(e.contains(want), "{want}: {e}");
        }
    }
}
