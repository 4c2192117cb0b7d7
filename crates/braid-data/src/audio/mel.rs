//! Whisper's log-mel spectrogram (Radford et al. 2022, "Robust Speech Recognition via
//! Large-Scale Weak Supervision"), equal to `transformers.WhisperFeatureExtractor`
//! (`feature_extraction_whisper.py`): pad or cut to 30 s, 400-point periodic-Hann STFT
//! every 160 samples, power, Slaney-normalised Slaney-scale mel filters (librosa's
//! defaults; `audio_utils.mel_filter_bank`), `log10(max(mel, 1e-10))`, floor at the
//! maximum minus 8, `(x + 4) / 4`, last frame dropped.

use std::path::Path;

use braid_core::{Error, Result};
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::power_spectrogram;

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
        Self { feature_size: 80, sampling_rate: 16_000, hop_length: 160, chunk_length: 30, n_fft: 400, padding_value: 0.0 }
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
    /// Builds the mel filters for `cfg`.
    pub fn new(cfg: WhisperFeaturesConfig) -> Self {
        let bins = cfg.n_fft / 2 + 1;
        let dense = mel_filter_bank(bins, cfg.feature_size, 0.0, f64::from(cfg.sampling_rate) / 2.0, cfg.sampling_rate);
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

    /// Reads `preprocessor_config.json`.
    pub fn from_json_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let cfg = serde_json::from_str(&text).map_err(|e| Error::format(path, e.to_string()))?;
        Ok(Self::new(cfg))
    }

    /// The configuration.
    pub fn config(&self) -> &WhisperFeaturesConfig {
        &self.cfg
    }

    /// Frames per 30-s window (3000).
    pub fn frames(&self) -> usize {
        self.cfg.chunk_length * self.cfg.sampling_rate as usize / self.cfg.hop_length.max(1)
    }

    /// Mono samples at `sampling_rate` -> log-mel `[feature_size, frames]` (f32).
    pub fn extract(&self, samples: &[f32]) -> Result<Tensor> {
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
        let out: Vec<f32> = logmel.iter().map(|&v| ((v.max(top - 8.0) + 4.0) / 4.0) as f32).collect();
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
    if f >= min_log_hz { min_log_mel + (f / min_log_hz).ln() / logstep } else { 3.0 * f / 200.0 }
}

fn mel_to_hz(m: f64) -> f64 {
    let (min_log_hz, min_log_mel, logstep) = (1000.0, 15.0, 6.4f64.ln() / 27.0);
    if m >= min_log_mel { min_log_hz * (logstep * (m - min_log_mel)).exp() } else { 200.0 * m / 3.0 }
}

/// Slaney-scale triangular filters with Slaney (area) normalisation, as
/// `transformers.audio_utils.mel_filter_bank(norm="slaney", mel_scale="slaney")` and
/// `librosa.filters.mel`. -> `[n_mels, n_freqs]`, row-major
pub fn mel_filter_bank(n_freqs: usize, n_mels: usize, fmin: f64, fmax: f64, sample_rate: u32) -> Vec<f64> {
    let (mmin, mmax) = (hz_to_mel(fmin), hz_to_mel(fmax));
    let edges: Vec<f64> =
        (0..n_mels + 2).map(|i| mel_to_hz(mmin + (mmax - mmin) * i as f64 / (n_mels + 1) as f64)).collect();
    let nyquist = f64::from(sample_rate / 2);
    let fft_freqs: Vec<f64> = (0..n_freqs).map(|k| nyquist * k as f64 / (n_freqs.max(2) - 1) as f64).collect();
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
        let path = format!("{}/../../fixtures/audio/logmel.safetensors", env!("CARGO_MANIFEST_DIR"));
        let f = candle_core::safetensors::load(&path, &Device::Cpu)?;
        let get = |k: &str| f.get(k).cloned().ok_or_else(|| Error::Invalid(format!("no {k}")));
        let wave = get("waveform")?.to_vec1::<f32>()?;
        let wav = format!("{}/../../fixtures/audio/speech_16k.wav", env!("CARGO_MANIFEST_DIR"));
        assert_eq!(crate::audio::load_audio(wav, &crate::audio::AudioOptions::default())?, wave);
        for bins in [80usize, 128] {
            let fe = WhisperFeatures::new(WhisperFeaturesConfig { feature_size: bins, ..Default::default() });
            let got = fe.extract(&wave)?;
            assert_eq!(got.dims(), [bins, 3000]);
            let head = get(&format!("mel{bins}_head"))?;
            let d = braid_core::testing::max_abs_diff(&got.narrow(1, 0, 128)?, &head)?;
            eprintln!("log-mel {bins} bins: max abs diff {d:.2e} on the first 128 frames");
            assert!(d <= 1e-3, "{bins} bins: {d}");
            let tail = get(&format!("mel{bins}_tail"))?.to_vec1::<f32>()?[0];
            let rest = got.narrow(1, 128, 3000 - 128)?;
            let dt = (rest - f64::from(tail))?.abs()?.max_all()?.to_dtype(DType::F32)?.to_scalar::<f32>()?;
            assert!(dt <= 1e-3, "{bins} bins padding frames: {dt}");
        }
        Ok(())
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
