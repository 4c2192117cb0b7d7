//! Whisper's log-mel spectrogram (Radford et al. 2022, "Robust Speech Recognition via
//! Large-Scale Weak Supervision"), equal to `transformers.WhisperFeatureExtractor`
//! (`feature_extraction_whisper.py`): pad or cut to 30 s, 400-point periodic-Hann STFT
//! every 160 samples, power, Slaney-normalised Slaney-scale mel filters (librosa's
//! defaults; `audio_utils.mel_filter_bank`), `log10(max(mel, 1e-10))`, floor at the
//! maximum minus 8, `(x + 4) / 4`, last frame dropped.

use std::path::Path;

use braid_core::limits::AUDIO_SAMPLES;
use braid_core::{Error, Result};
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::{power_spectrogram, MAX_SAMPLE_RATE};

/// Most mel bins accepted (Whisper large-v3: 128).
const MAX_MEL_BINS: usize = 1024;
/// Largest FFT accepted (Whisper: 400).
const MAX_N_FFT: usize = 1 << 16;

/// The fields of a Hugging Face `preprocessor_config.json` for Whisper.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct WhisperFeaturesConfig {
    /// Mel bins (80; 128 for large-v3).
    pub feature_size: usize,
    /// Input rate in Hz.
    pub sampling_rate: u32,
    /// STFT hop in samples.
    pub hop_length: usize,
    /// Seconds every input is padded or cut to.
    pub chunk_length: usize,
    /// FFT size.
    pub n_fft: usize,
    /// Padding sample value.
    pub padding_value: f32,
}

impl Default for WhisperFeaturesConfig {
    fn default() -> Self {
        Self {
            feature_size: 80,
            sampling_rate: 16_000,
            hop_length: 160,
            chunk_length: 30,
            n_fft: 400,
            padding_value: 0.0,
        }
    }
}

impl WhisperFeaturesConfig {
    /// Fails on a value that cannot make features, or that would size the padded window
    /// or the spectrogram past [`AUDIO_SAMPLES`], naming the field.
    pub fn validate(&self) -> Result<()> {
        let range = |field: &str, v: usize, lo: usize, hi: usize| {
            if v < lo || v > hi {
                return Err(Error::config(field, format!("must be in {lo}..={hi}, got {v}")));
            }
            Ok(())
        };
        range("feature_size", self.feature_size, 1, MAX_MEL_BINS)?;
        range("sampling_rate", self.sampling_rate as usize, 1, MAX_SAMPLE_RATE as usize)?;
        range("n_fft", self.n_fft, 2, MAX_N_FFT)?;
        range("hop_length", self.hop_length, 1, self.n_fft)?;
        if self.chunk_length == 0 {
            return Err(Error::config("chunk_length", "must be at least 1 second"));
        }
        if !self.padding_value.is_finite() {
            return Err(Error::config(
                "padding_value",
                format!("must be a finite number, got {}", self.padding_value),
            ));
        }
        let samples = (self.chunk_length as u64).checked_mul(u64::from(self.sampling_rate));
        let what = format!("a window of {} s at {} Hz", self.chunk_length, self.sampling_rate);
        AUDIO_SAMPLES.check_opt(samples, &what).map_err(|m| Error::config("chunk_length", m))?;
        // Spectrogram and log-mel values, one row of each per hop.
        let frames = samples.unwrap_or(u64::MAX) / self.hop_length as u64 + 1;
        let per_frame = (self.n_fft / 2 + 1).max(self.feature_size) as u64;
        let what = format!("the spectrogram of {frames} frames of {per_frame} values");
        AUDIO_SAMPLES
            .check_opt(frames.checked_mul(per_frame), &what)
            .map_err(|m| Error::config("hop_length", m))?;
        Ok(())
    }
}

/// The feature extractor: configuration plus precomputed filters.
#[derive(Debug, Clone)]
pub struct WhisperFeatures {
    cfg: WhisperFeaturesConfig,
    /// Per mel bin: first non-zero FFT bin and the weights from there.
    filters: Vec<(usize, Vec<f64>)>,
}

impl WhisperFeatures {
    /// Builds the mel filters for `cfg`. An invalid `cfg` builds none, and
    /// [`WhisperFeatures::extract`] then fails with the reason; [`WhisperFeatures::try_new`]
    /// fails at once.
    pub fn new(cfg: WhisperFeaturesConfig) -> Self {
        if cfg.validate().is_err() {
            return Self { cfg, filters: Vec::new() };
        }
        let bins = cfg.n_fft / 2 + 1;
        let dense = mel_filter_bank(
            bins,
            cfg.feature_size,
            0.0,
            f64::from(cfg.sampling_rate) / 2.0,
            cfg.sampling_rate,
        );
        let filters = dense
            .chunks(bins.max(1))
            .map(|row| {
                let lo = row.iter().position(|&w| w != 0.0).unwrap_or(0);
                let hi = row.iter().rposition(|&w| w != 0.0).map_or(lo, |h| h + 1);
                (lo, row[lo..hi].to_vec())
            })
            .collect();
        Self { cfg, filters }
    }

    /// Like [`WhisperFeatures::new`], failing on an invalid `cfg`.
    pub fn try_new(cfg: WhisperFeaturesConfig) -> Result<Self> {
        cfg.validate()?;
        Ok(Self::new(cfg))
    }

    /// Reads `preprocessor_config.json`; a bad value is an error naming the file and field.
    pub fn from_json_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let cfg = serde_json::from_str(&text).map_err(|e| Error::format(path, e.to_string()))?;
        Self::try_new(cfg).map_err(|e| Error::format(path, e.to_string()))
    }

    /// The configuration.
    pub fn config(&self) -> &WhisperFeaturesConfig {
        &self.cfg
    }

    /// Frames per 30-s window (3000).
    pub fn frames(&self) -> usize {
        self.cfg.chunk_length.saturating_mul(self.cfg.sampling_rate as usize)
            / self.cfg.hop_length.max(1)
    }

    /// Mono samples at `sampling_rate` -> log-mel `[feature_size, frames]` (f32).
    pub fn extract(&self, samples: &[f32]) -> Result<Tensor> {
        self.cfg.validate()?;
        let n = self.cfg.chunk_length * self.cfg.sampling_rate as usize;
        let mut x: Vec<f32> = samples.iter().copied().take(n).collect();
        x.resize(n, self.cfg.padding_value);
        let (spec, frames) = power_spectrogram(&x, self.cfg.n_fft, self.cfg.hop_length)?;
        let bins = self.cfg.n_fft / 2 + 1;
        let kept = frames - 1;
        let mut logmel = vec![0f64; self.filters.len() * kept];
        for (m, (lo, w)) in self.filters.iter().enumerate() {
            for f in 0..kept {
                let row = &spec[f * bins + lo..f * bins + lo + w.len()];
                let e: f64 = row.iter().zip(w).map(|(a, b)| a * b).sum();
                logmel[m * kept + f] = e.max(1e-10).log10();
            }
        }
        let top = logmel.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let out: Vec<f32> =
            logmel.iter().map(|&v| ((v.max(top - 8.0) + 4.0) / 4.0) as f32).collect();
        Ok(Tensor::from_vec(out, (self.filters.len(), kept), &Device::Cpu)?)
    }

    /// Several clips -> `[batch, feature_size, frames]`.
    pub fn extract_batch(&self, clips: &[Vec<f32>]) -> Result<Tensor> {
        let feats = clips.iter().map(|c| self.extract(c)).collect::<Result<Vec<_>>>()?;
        Ok(Tensor::stack(&feats, 0)?)
    }
}

fn hz_to_mel(f: f64) -> f64 {
    let (min_log_hz, min_log_mel, logstep) = (1000.0, 15.0, 6.4f64.ln() / 27.0);
    if f >= min_log_hz {
        min_log_mel + (f / min_log_hz).ln() / logstep
    } else {
        3.0 * f / 200.0
    }
}

fn mel_to_hz(m: f64) -> f64 {
    let (min_log_hz, min_log_mel, logstep) = (1000.0, 15.0, 6.4f64.ln() / 27.0);
    if m >= min_log_mel {
        min_log_hz * (logstep * (m - min_log_mel)).exp()
    } else {
        200.0 * m / 3.0
    }
}

/// Slaney-scale triangular filters with Slaney (area) normalisation, as
/// `transformers.audio_utils.mel_filter_bank(norm="slaney", mel_scale="slaney")` and
/// `librosa.filters.mel`. -> `[n_mels, n_freqs]`, row-major
pub fn mel_filter_bank(
    n_freqs: usize,
    n_mels: usize,
    fmin: f64,
    fmax: f64,
    sample_rate: u32,
) -> Vec<f64> {
    let (mmin, mmax) = (hz_to_mel(fmin), hz_to_mel(fmax));
    let edges: Vec<f64> = (0..n_mels + 2)
        .map(|i| mel_to_hz(mmin + (mmax - mmin) * i as f64 / (n_mels + 1) as f64))
        .collect();
    let nyquist = f64::from(sample_rate / 2);
    let fft_freqs: Vec<f64> =
        (0..n_freqs).map(|k| nyquist * k as f64 / (n_freqs.max(2) - 1) as f64).collect();
    let mut out = vec![0f64; n_mels * n_freqs];
    for m in 0..n_mels {
        let (lo, mid, hi) = (edges[m], edges[m + 1], edges[m + 2]);
        let norm = 2.0 / (hi - lo);
        for (k, &f) in fft_freqs.iter().enumerate() {
            let down = (f - lo) / (mid - lo);
            let up = (hi - f) / (hi - mid);
            out[m * n_freqs + k] = down.min(up).max(0.0) * norm;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::DType;

    #[test]
    fn matches_whisper_feature_extractor_on_speech() -> Result<()> {
        let path =
            format!("{}/../../fixtures/audio/logmel.safetensors", env!("CARGO_MANIFEST_DIR"));
        let f = candle_core::safetensors::load(&path, &Device::Cpu)?;
        let get = |k: &str| f.get(k).cloned().ok_or_else(|| Error::Invalid(format!("no {k}")));
        let wave = get("waveform")?.to_vec1::<f32>()?;
        let wav = format!("{}/../../fixtures/audio/speech_16k.wav", env!("CARGO_MANIFEST_DIR"));
        assert_eq!(crate::audio::load_audio(wav, &crate::audio::AudioOptions::default())?, wave);
        for bins in [80usize, 128] {
            let fe = WhisperFeatures::new(WhisperFeaturesConfig {
                feature_size: bins,
                ..Default::default()
            });
            let got = fe.extract(&wave)?;
            assert_eq!(got.dims(), [bins, 3000]);
            let head = get(&format!("mel{bins}_head"))?;
            let d = braid_core::testing::max_abs_diff(&got.narrow(1, 0, 128)?, &head)?;
            eprintln!("log-mel {bins} bins: max abs diff {d:.2e} on the first 128 frames");
            assert!(d <= 1e-3, "{bins} bins: {d}");
            let tail = get(&format!("mel{bins}_tail"))?.to_vec1::<f32>()?[0];
            let rest = got.narrow(1, 128, 3000 - 128)?;
            let dt = (rest - f64::from(tail))?
                .abs()?
                .max_all()?
                .to_dtype(DType::F32)?
                .to_scalar::<f32>()?;
            assert!(dt <= 1e-3, "{bins} bins padding frames: {dt}");
        }
        Ok(())
    }

    #[test]
    fn alloc_mel_chunk_length() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            (
                r#"{"chunk_length": 1000000000}"#,
                "`chunk_length`: a window of 1000000000 s at 16000 Hz needs 16000000000000 samples",
            ),
            (r#"{"chunk_length": 18446744073709551615}"#, "more than 2^64 samples"),
            (
                r#"{"chunk_length": 3600, "hop_length": 1, "n_fft": 400}"#,
                "`hop_length`: the spectrogram of",
            ),
            (r#"{"chunk_length": 0}"#, "`chunk_length`: must be at least 1"),
            (r#"{"feature_size": 100000000}"#, "`feature_size`: must be in 1..=1024"),
            (r#"{"n_fft": 1}"#, "`n_fft`"),
            (r#"{"hop_length": 0}"#, "`hop_length`"),
            (r#"{"sampling_rate": 0}"#, "`sampling_rate`"),
        ];
        for (i, (json, want)) in cases.into_iter().enumerate() {
            let p = dir.path().join(format!("preprocessor_config_{i}.json"));
            std::fs::write(&p, json).unwrap();
            let e = WhisperFeatures::from_json_file(&p)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(
                e.contains(&format!("preprocessor_config_{i}.json")) && e.contains(want),
                "{json}: {e}"
            );
        }
        // Built through `new` (infallible), the extractor fails when used.
        let fe = WhisperFeatures::new(WhisperFeaturesConfig {
            feature_size: usize::MAX,
            ..Default::default()
        });
        assert!(fe
            .extract(&[0.0; 16])
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
            .contains("`feature_size`"));
    }

    #[test]
    fn filters_are_triangles_with_slaney_area() {
        let fb = mel_filter_bank(201, 80, 0.0, 8000.0, 16000);
        assert_eq!(fb.len(), 80 * 201);
        assert!(fb.iter().all(|&w| w >= 0.0));
        // Every filter has some weight.
        assert!(fb.chunks(201).all(|row| row.iter().any(|&w| w > 0.0)));
    }
}
