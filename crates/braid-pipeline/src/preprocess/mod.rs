//! How a file becomes an encoder's input, stored per slot in `pipeline.toml` so that
//! training and every inference command preprocess alike:
//!
//! ```toml
//! [encoders.preprocess]
//! type = "image"
//! resize = { height = 64, width = 64 }   # or { shortest_edge = 224 }; absent: kept
//! resample = 3                           # Pillow filter number (3: bicubic)
//! center_crop = { height = 64, width = 64 }
//! image_mean = [0.5, 0.5, 0.5]
//! image_std = [0.5, 0.5, 0.5]
//! ```
//!
//! The image settings are those of Hugging Face's `preprocessor_config.json`
//! (`CLIPImageProcessor`), executed by [`braid_data::image::ImageProcessor`]. IMU slots
//! keep the per-channel statistics training standardised with, the window length and,
//! optionally, the sampling rate (checked against a CSV's time column; see [`imu`]):
//!
//! ```toml
//! [encoders.preprocess]
//! type = "imu"
//! channels = ["acc-x", "acc-y", "acc-z", "gyro-x", "gyro-y", "gyro-z"]
//! mean = [...]
//! std = [...]
//! window = 128      # samples per window in training (50 Hz: 2.56 s)
//! stride = 64
//! rate_hz = 50.0    # optional
//! ```
//!
//! Audio slots resample to one rate and compute Whisper's log-mel features, padded or cut
//! to the slot's length (see [`audio`]); every field but `max_seconds` has the default
//! shown:
//!
//! ```toml
//! [encoders.preprocess]
//! type = "audio"
//! max_seconds = 10.0
//! sample_rate = 16000
//! mels = 128            # the encoder's `mels`
//! n_fft = 400           # 25 ms windows
//! hop_length = 160      # every 10 ms
//! pad_to_max = true     # shorter clips padded with silence to max_seconds
//! trim = false          # longer clips refused (true: cut)
//! silence_rms = 1e-4    # quieter clips refused as silent
//! ```

mod audio;
mod image;
mod imu;

use std::path::Path;

use braid_core::{Error, Modality, Result};
use braid_data::image::load_rgb;
use candle_core::Device;
use serde::{Deserialize, Serialize};

pub use self::audio::AudioPreprocess;
pub use self::image::{ImagePreprocess, Size};
pub use self::imu::ImuPreprocess;
use crate::Input;

/// One slot's preprocessing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Preprocess {
    /// Resize, crop, rescale, normalise an RGB image.
    Image(ImagePreprocess),
    /// Standardise each channel of a recording.
    Imu(ImuPreprocess),
    /// Resample a clip and take its log-mel spectrogram.
    Audio(AudioPreprocess),
}

impl Preprocess {
    /// The modality this preprocessing reads.
    pub fn modality(&self) -> Modality {
        match self {
            Self::Image(_) => Modality::Image,
            Self::Imu(_) => Modality::Imu,
            Self::Audio(_) => Modality::Audio,
        }
    }

    /// Checks the settings (run when a model directory is opened).
    pub fn validate(&self) -> Result<()> {
        match self {
            Self::Image(p) => p.processor().map(|_| ()),
            Self::Imu(p) => p.stats().map(|_| ()),
            Self::Audio(p) => p.validate(),
        }
    }

    /// Preprocesses an image or an audio clip held in memory (an upload) into one input
    /// (batch 1); `name` stands for it in errors.
    pub fn load_bytes(&self, bytes: &[u8], name: &Path, device: &Device) -> Result<Input> {
        let data = match self {
            Self::Image(p) => {
                let img = braid_data::image::decode_rgb(bytes, name)?;
                p.apply(&img, device).map_err(|e| Error::format(name, e.to_string()))?
            }
            Self::Audio(p) => p.load_bytes(bytes.to_vec(), name, device)?,
            Self::Imu(_) => {
                let msg = "an IMU recording is read from a file or from rows, not from bytes";
                return Err(Error::format(name, msg));
            }
        };
        Ok(Input { modality: self.modality(), data, mask: None })
    }

    /// Reads `path` and preprocesses it into one input (batch 1); errors name the file.
    pub fn load(&self, path: &Path, device: &Device) -> Result<Input> {
        let data = match self {
            Self::Image(p) => {
                let img = load_rgb(path)?;
                p.apply(&img, device).map_err(|e| Error::format(path, e.to_string()))?
            }
            Self::Imu(p) => p.load(path, device)?,
            Self::Audio(p) => p.load(path, device)?,
        };
        Ok(Input { modality: self.modality(), data, mask: None })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_zero_std_names_the_field() {
        let p = Preprocess::Image(ImagePreprocess::fixed(2, 2, [0.5; 3], [0.5, 0.0, 0.5]));
        let e = p.validate().err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("preprocess.image_std"), "{e}");
    }

    fn round_trip(text: &str, typo: &str) -> Preprocess {
        let p: Preprocess = toml::from_str(text).unwrap();
        let again: Preprocess = toml::from_str(&toml::to_string(&p).unwrap()).unwrap();
        assert_eq!(p, again);
        let e = toml::from_str::<Preprocess>(&format!("{text}{typo} = 1\n"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains(typo), "{e}");
        p
    }

    #[test]
    fn toml_round_trip_and_unknown_fields() {
        round_trip("type = \"image\"\nresize = { height = 64, width = 64 }\nimage_mean = [0.5, 0.5, 0.5]\nimage_std = [0.5, 0.5, 0.5]\n", "image_sdt");
        let imu = "type = \"imu\"\nchannels = [\"ax\"]\nmean = [0.0]\nstd = [1.0]\n";
        let p = round_trip(imu, "rate");
        assert!(!toml::to_string(&p).unwrap().contains("rate_hz"), "absent stays absent");
        let p = round_trip(&format!("{imu}rate_hz = 50.0\n"), "rate");
        assert!(matches!(p, Preprocess::Imu(ImuPreprocess { rate_hz: Some(r), .. }) if r == 50.0));
        let p = round_trip("type = \"audio\"\nmax_seconds = 2.5\nmels = 64\n", "max_secs");
        assert_eq!(p, Preprocess::Audio(AudioPreprocess { mels: 64, ..AudioPreprocess::new(2.5) }));
        assert_eq!(p.modality(), Modality::Audio);
        p.validate().unwrap();
    }
}
