//! File -> mono samples at the model's rate: decode, down-mix, resample, cap the duration.

use std::path::Path;

use braid_core::{Error, Result};

use super::{decode_file, resample, MAX_SAMPLE_RATE};

/// Target rate and length.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AudioOptions {
    /// Output rate in Hz (Whisper: 16000).
    pub sample_rate: u32,
    /// Longer audio is cut to this many seconds (Whisper: 30); `None` keeps everything.
    pub max_seconds: Option<f64>,
}

impl Default for AudioOptions {
    fn default() -> Self {
        Self { sample_rate: 16_000, max_seconds: Some(30.0) }
    }
}

impl AudioOptions {
    /// Fails on a rate outside `1..=MAX_SAMPLE_RATE` or a duration that is not a finite
    /// positive number, naming the field.
    pub fn validate(&self) -> Result<()> {
        if self.sample_rate == 0 || self.sample_rate > MAX_SAMPLE_RATE {
            return Err(Error::config(
                "sample_rate",
                format!("must be in 1..={MAX_SAMPLE_RATE} Hz, got {}", self.sample_rate),
            ));
        }
        match self.max_seconds {
            Some(s) if !(s.is_finite() && s > 0.0) => Err(Error::config(
                "max_seconds",
                format!("must be a finite number of seconds > 0, got {s}"),
            )),
            _ => Ok(()),
        }
    }
}

/// Decodes `path`, averages its channels, resamples to `opts.sample_rate` and cuts it to
/// `opts.max_seconds`. -> mono samples
pub fn load_audio(path: impl AsRef<Path>, opts: &AudioOptions) -> Result<Vec<f32>> {
    let path = path.as_ref();
    opts.validate()?;
    let audio = decode_file(path)?;
    let mut mono = audio.to_mono();
    // Cut before resampling (plus a margin for the filter) so long files stay cheap.
    if let Some(max) = opts.max_seconds {
        let keep = ((max + 0.1) * f64::from(audio.sample_rate)).ceil() as usize;
        mono.truncate(keep);
    }
    let mut out = resample(&mono, audio.sample_rate, opts.sample_rate)
        .map_err(|e| Error::format(path, e.to_string()))?;
    if let Some(max) = opts.max_seconds {
        out.truncate((max * f64::from(opts.sample_rate)).round() as usize);
    }
    // Finite but huge float samples (3e38) overflow to Inf when channels are summed or
    // the resampling filter runs: refused here, not passed on as NaN features.
    if let Some(i) = out.iter().position(|x| !x.is_finite()) {
        let peak = audio.samples.iter().fold(0f32, |m, x| m.max(x.abs()));
        return Err(Error::format(
            path,
            format!(
                "samples as large as {peak:e} overflow when mixed to mono and resampled (output sample {i} is not finite); float audio lies in [-1, 1]"
            ),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::decode::tests::{fixture, float_wav_bytes, wav_bytes};

    #[test]
    fn silent_audio_overflow_to_inf() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("huge.wav");
        let loud: Vec<f32> = (0..2205).map(|i| if i % 2 == 0 { 3e38 } else { 2.9e38 }).collect();
        std::fs::write(&path, float_wav_bytes(&loud, 22050)).unwrap();
        let opts = AudioOptions { sample_rate: 16_000, max_seconds: None };
        let e = load_audio(&path, &opts).unwrap_err().to_string();
        assert!(e.contains("huge.wav") && e.contains("3e38") && e.contains("not finite"), "{e}");
        // Loud but sane float audio is kept.
        std::fs::write(&path, float_wav_bytes(&vec![1.5; 2205], 22050)).unwrap();
        assert!(load_audio(&path, &opts).unwrap().iter().all(|x| x.is_finite()));
    }

    #[test]
    fn an_8_channel_96k_file_becomes_16k_mono() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("8ch.wav");
        std::fs::write(&path, wav_bytes(8, 96_000, 96_000 / 2)).unwrap();
        let y = load_audio(&path, &AudioOptions { sample_rate: 16_000, max_seconds: Some(0.25) })
            .unwrap();
        assert_eq!(y.len(), 4000);
        // Channels hold 0.0, 0.1, ..., 0.7: their mean is 0.35 (DC passes the filter).
        assert!((y[2000] - 0.35).abs() < 1e-3, "{}", y[2000]);
    }

    #[test]
    fn nan_audio_options() {
        let f = fixture("speech_16k.wav");
        for (opts, want) in [
            (AudioOptions { max_seconds: Some(f64::NAN), ..Default::default() }, "`max_seconds`"),
            (AudioOptions { max_seconds: Some(-1.0), ..Default::default() }, "`max_seconds`"),
            (AudioOptions { sample_rate: 0, ..Default::default() }, "`sample_rate`"),
            (AudioOptions { sample_rate: u32::MAX, ..Default::default() }, "`sample_rate`"),
        ] {
            let e = load_audio(&f, &opts).unwrap_err().to_string();
            assert!(e.contains(want), "{e}");
        }
    }

    #[test]
    fn the_speech_fixture_loads_unchanged_at_its_own_rate() {
        let y = load_audio(fixture("speech_16k.wav"), &AudioOptions::default()).unwrap();
        assert_eq!(y.len(), 17526);
    }
}
