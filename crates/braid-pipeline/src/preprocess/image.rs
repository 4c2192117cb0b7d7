//! Image slots: the settings of Hugging Face's `preprocessor_config.json`
//! (`CLIPImageProcessor`), executed by [`braid_data::image::ImageProcessor`].

use braid_core::{Error, Result};
use braid_data::image::{ImageProcessor, ImageProcessorConfig, SizeSpec};
use candle_core::{Device, Tensor};
use image::RgbImage;
use serde::{Deserialize, Serialize};

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

    pub(super) fn processor(&self) -> Result<ImageProcessor> {
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

#[cfg(test)]
mod tests {
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
}
