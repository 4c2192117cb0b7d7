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
//! keep the per-channel statistics training standardised with, and the window length:
//!
//! ```toml
//! [encoders.preprocess]
//! type = "imu"
//! channels = ["acc-x", "acc-y", "acc-z", "gyro-x", "gyro-y", "gyro-z"]
//! mean = [...]
//! std = [...]
//! window = 128      # samples per window in training (50 Hz: 2.56 s)
//! stride = 64
//! ```

use std::path::Path;

use braid_core::checkpoint::read_npy;
use braid_core::{Error, Modality, Result};
use braid_data::image::{load_rgb, ImageProcessor, ImageProcessorConfig, SizeSpec};
use braid_data::imu::{read_csv, read_ts, ChannelStats, CsvOptions, ImuDataset};
use candle_core::{Device, Tensor};
use image::RgbImage;
use serde::{Deserialize, Serialize};

use crate::Input;

/// One slot's preprocessing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Preprocess {
    /// Resize, crop, rescale, normalise an RGB image.
    Image(ImagePreprocess),
    /// Standardise each channel of a recording.
    Imu(ImuPreprocess),
}

/// An IMU slot's standardisation and windowing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImuPreprocess {
    /// Channel names, in input order.
    pub channels: Vec<String>,
    /// Mean per channel.
    pub mean: Vec<f32>,
    /// Standard deviation per channel.
    pub std: Vec<f32>,
    /// Samples per window the model was trained on (absent: whole recordings).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<usize>,
    /// Samples between window starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stride: Option<usize>,
}

/// Longest recording read for one input (samples), so a hostile file cannot size an
/// unbounded tensor.
const MAX_IMU_SAMPLES: usize = 1 << 22;

impl ImuPreprocess {
    /// The statistics, checked: one mean and one positive finite std per channel.
    pub fn stats(&self) -> Result<ChannelStats> {
        let c = self.channels.len();
        if c == 0 || self.mean.len() != c || self.std.len() != c {
            return Err(Error::config(
                "preprocess",
                format!("{c} channels but {} means and {} stds", self.mean.len(), self.std.len()),
            ));
        }
        if self.window == Some(0) || self.stride == Some(0) {
            return Err(Error::config("preprocess.window", "window and stride must be at least 1"));
        }
        let stats = ChannelStats {
            channels: self.channels.clone(),
            mean: self.mean.clone(),
            std: self.std.clone(),
        };
        stats.check().map_err(|msg| Error::config("preprocess", msg))?;
        Ok(stats)
    }

    /// The preprocessing of `stats`, windowed as given.
    pub fn from_stats(stats: &ChannelStats, window: Option<usize>, stride: Option<usize>) -> Self {
        Self {
            channels: stats.channels.clone(),
            mean: stats.mean.clone(),
            std: stats.std.clone(),
            window,
            stride,
        }
    }

    /// A whole recording (`.npy` `[T, C]` float, `.csv` with a header, `.ts`: its first
    /// case) -> standardised `[1, T, C]`.
    pub fn load(&self, path: &Path, device: &Device) -> Result<Tensor> {
        let stats = self.stats()?;
        let (values, t, c) = match path.extension().and_then(|e| e.to_str()) {
            Some("npy") => {
                let a = read_npy(path)?;
                let [t, c] = a.shape[..] else {
                    return Err(Error::format(
                        path,
                        format!("expected a [time, channels] array, got shape {:?}", a.shape),
                    ));
                };
                let v = a
                    .to_tensor(&Device::Cpu)?
                    .to_dtype(candle_core::DType::F32)?
                    .flatten_all()?
                    .to_vec1::<f32>()?;
                (v, t, c)
            }
            Some("csv") => first_recording(path, read_csv(path, &CsvOptions::default())?)?,
            Some("ts") => first_recording(path, read_ts(path)?)?,
            _ => return Err(Error::format(path, "an IMU recording must be .npy, .csv or .ts")),
        };
        if c != self.channels.len() {
            return Err(Error::format(
                path,
                format!(
                    "{c} channels, but the model reads {} ({})",
                    self.channels.len(),
                    self.channels.join(", ")
                ),
            ));
        }
        if t == 0 || t > MAX_IMU_SAMPLES {
            return Err(Error::format(
                path,
                format!("{t} samples (1 to {MAX_IMU_SAMPLES} are read)"),
            ));
        }
        if values.iter().any(|v| !v.is_finite()) {
            return Err(Error::format(path, "holds NaN or infinite samples"));
        }
        stats.apply(&Tensor::from_vec(values, (1, t, c), device)?)
    }
}

fn first_recording(path: &Path, ds: ImuDataset) -> Result<(Vec<f32>, usize, usize)> {
    let c = ds.channels.len();
    let rec =
        ds.recordings.into_iter().next().ok_or_else(|| Error::format(path, "no recording"))?;
    let t = rec.values.len() / c.max(1);
    Ok((rec.values, t, c))
}

/// A fixed size or a shortest edge.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(untagged, deny_unknown_fields)]
pub enum Size {
    /// Exactly `height x width`.
    Fixed {
        /// Rows.
        height: u32,
        /// Columns.
        width: u32,
    },
    /// The shorter side becomes `shortest_edge`, keeping the aspect ratio.
    ShortestEdge {
        /// Target of the shorter side.
        shortest_edge: u32,
    },
}

impl Size {
    fn spec(self) -> SizeSpec {
        match self {
            Self::Fixed { height, width } => {
                SizeSpec::Dict { shortest_edge: None, height: Some(height), width: Some(width) }
            }
            Self::ShortestEdge { shortest_edge } => {
                SizeSpec::Dict { shortest_edge: Some(shortest_edge), height: None, width: None }
            }
        }
    }
}

/// `preprocessor_config.json`'s image settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImagePreprocess {
    /// Resize target (absent: no resize).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resize: Option<Size>,
    /// Pillow filter number (0 nearest, 2 bilinear, 3 bicubic, 1 Lanczos).
    #[serde(default = "bicubic")]
    pub resample: u32,
    /// Centre crop after resizing (a fixed size).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub center_crop: Option<Size>,
    /// Per-channel mean subtracted after scaling to [0, 1].
    pub image_mean: [f64; 3],
    /// Per-channel standard deviation divided by.
    pub image_std: [f64; 3],
}

fn bicubic() -> u32 {
    3
}

impl ImagePreprocess {
    /// Scale to [0, 1] and normalise by `mean`, `std`, resizing to `height x width` when an
    /// image has another size.
    pub fn fixed(height: u32, width: u32, mean: [f64; 3], std: [f64; 3]) -> Self {
        Self {
            resize: Some(Size::Fixed { height, width }),
            resample: bicubic(),
            center_crop: None,
            image_mean: mean,
            image_std: std,
        }
    }

    /// The settings of a Hugging Face `preprocessor_config.json`.
    pub fn from_hf(cfg: &ImageProcessorConfig) -> Self {
        let size = |s: SizeSpec| match s {
            SizeSpec::Int(n) if cfg.do_center_crop => Size::ShortestEdge { shortest_edge: n },
            SizeSpec::Int(n) => Size::Fixed { height: n, width: n },
            SizeSpec::Dict { shortest_edge: Some(n), .. } => {
                Size::ShortestEdge { shortest_edge: n }
            }
            SizeSpec::Dict { height, width, .. } => {
                Size::Fixed { height: height.unwrap_or(0), width: width.unwrap_or(0) }
            }
        };
        let (mean, std) =
            if cfg.do_normalize { (cfg.image_mean, cfg.image_std) } else { ([0.0; 3], [1.0; 3]) };
        Self {
            resize: cfg.do_resize.then(|| size(cfg.size)),
            resample: cfg.resample,
            center_crop: cfg.crop_size.filter(|_| cfg.do_center_crop).map(size),
            image_mean: mean,
            image_std: std,
        }
    }

    fn processor(&self) -> Result<ImageProcessor> {
        if let Some(bad) = self.image_std.iter().find(|s| !s.is_finite() || **s == 0.0) {
            return Err(Error::config(
                "preprocess.image_std",
                format!("{bad} (must be finite and non-zero)"),
            ));
        }
        if self.image_mean.iter().any(|m| !m.is_finite()) {
            return Err(Error::config("preprocess.image_mean", "must be finite"));
        }
        ImageProcessor::new(ImageProcessorConfig {
            do_resize: self.resize.is_some(),
            size: self.resize.map_or(SizeSpec::Int(0), Size::spec),
            resample: self.resample,
            do_center_crop: self.center_crop.is_some(),
            crop_size: self.center_crop.map(Size::spec),
            do_rescale: true,
            rescale_factor: 1.0 / 255.0,
            do_normalize: true,
            image_mean: self.image_mean,
            image_std: self.image_std,
        })
    }

    /// img: [h, w, 3] u8 -> [1, 3, H, W] f32
    pub fn apply(&self, img: &RgbImage, device: &Device) -> Result<Tensor> {
        Ok(self.processor()?.preprocess(img, device)?.unsqueeze(0)?)
    }
}

impl Preprocess {
    /// The modality this preprocessing reads.
    pub fn modality(&self) -> Modality {
        match self {
            Self::Image(_) => Modality::Image,
            Self::Imu(_) => Modality::Imu,
        }
    }

    /// Checks the settings (run when a model directory is opened).
    pub fn validate(&self) -> Result<()> {
        match self {
            Self::Image(p) => p.processor().map(|_| ()),
            Self::Imu(p) => p.stats().map(|_| ()),
        }
    }

    /// Reads `path` and preprocesses it into one input (batch 1); errors name the file.
    pub fn load(&self, path: &Path, device: &Device) -> Result<Input> {
        match self {
            Self::Image(p) => {
                let img = load_rgb(path)?;
                let data = p.apply(&img, device).map_err(|e| Error::format(path, e.to_string()))?;
                Ok(Input { modality: Modality::Image, data, mask: None })
            }
            Self::Imu(p) => {
                Ok(Input { modality: Modality::Imu, data: p.load(path, device)?, mask: None })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn an_image_of_the_target_size_is_only_scaled_and_normalised() -> Result<()> {
        let p = ImagePreprocess::fixed(2, 2, [0.5; 3], [0.5; 3]);
        let img = RgbImage::from_fn(2, 2, |x, y| image::Rgb([(x * 255) as u8, (y * 255) as u8, 0]));
        let t = p.apply(&img, &Device::Cpu)?;
        assert_eq!(t.dims(), &[1, 3, 2, 2]);
        let v = t.squeeze(0)?.to_vec3::<f32>()?;
        assert_eq!(v[0], vec![vec![-1.0, 1.0], vec![-1.0, 1.0]]);
        assert_eq!(v[1], vec![vec![-1.0, -1.0], vec![1.0, 1.0]]);
        let resized = p.apply(&RgbImage::new(5, 3), &Device::Cpu)?;
        assert_eq!(resized.dims(), &[1, 3, 2, 2]);
        Ok(())
    }

    #[test]
    fn a_zero_std_names_the_field() {
        let p = Preprocess::Image(ImagePreprocess::fixed(2, 2, [0.5; 3], [0.5, 0.0, 0.5]));
        let e = p.validate().err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("preprocess.image_std"), "{e}");
    }

    #[test]
    fn an_imu_recording_is_standardised_with_the_stored_statistics() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tmp", e))?;
        let path = dir.path().join("r.csv");
        std::fs::write(&path, "ax,ay\n1,10\n3,30\n").map_err(|e| Error::io(&path, e))?;
        let p = ImuPreprocess {
            channels: vec!["ax".into(), "ay".into()],
            mean: vec![2.0, 20.0],
            std: vec![1.0, 10.0],
            window: None,
            stride: None,
        };
        let x = p.load(&path, &Device::Cpu)?;
        assert_eq!(x.squeeze(0)?.to_vec2::<f32>()?, vec![vec![-1.0, -1.0], vec![1.0, 1.0]]);
        let three = ImuPreprocess {
            channels: vec!["a".into(), "b".into(), "c".into()],
            mean: vec![0.0; 3],
            std: vec![1.0; 3],
            ..p.clone()
        };
        let e = three.load(&path, &Device::Cpu).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("r.csv") && e.contains("2 channels"), "{e}");
        let bad = ImuPreprocess { std: vec![1.0, 0.0], ..p };
        let e = bad.stats().err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("preprocess") && e.contains("std[1] of channel `ay` is 0"), "{e}");
        Ok(())
    }

    #[test]
    fn toml_round_trip_and_unknown_fields() {
        let text = "type = \"image\"\nresize = { height = 64, width = 64 }\nimage_mean = [0.5, 0.5, 0.5]\nimage_std = [0.5, 0.5, 0.5]\n";
        let p: Preprocess = toml::from_str(text).unwrap();
        let again: Preprocess = toml::from_str(&toml::to_string(&p).unwrap()).unwrap();
        assert_eq!(p, again);
        let e = toml::from_str::<Preprocess>(&format!("{text}image_sdt = [1, 1, 1]\n"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("image_sdt"), "{e}");
    }
}
