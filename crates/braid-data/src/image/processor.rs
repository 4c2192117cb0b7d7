//! Image preprocessing driven by `preprocessor_config.json`, equal to Hugging Face's
//! `CLIPImageProcessor` / `ViTImageProcessor` with the PIL backend: resize (shortest edge
//! or fixed size, Pillow's antialiased filters), centre crop, rescale, normalise.
//! Reference: `transformers.models.clip.image_processing_pil_clip`,
//! `transformers.image_processing_backends.PilBackend`, `image_transforms.center_crop`.

use std::path::Path;

use braid_core::limits::PIXELS;
use braid_core::{Error, Result};
use candle_core::{Device, Tensor};
use image::RgbImage;
use serde::Deserialize;

use super::resample::{resize_rgb, Filter};

/// A `size` / `crop_size` entry: a bare integer (old configs) or a dict.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum SizeSpec {
    /// `224`: the shortest edge when centre-cropping follows, else a square.
    Int(u32),
    /// `{"shortest_edge": 224}` or `{"height": 224, "width": 224}`.
    Dict {
        /// Target of the shorter side, keeping the aspect ratio.
        shortest_edge: Option<u32>,
        /// Fixed height.
        height: Option<u32>,
        /// Fixed width.
        width: Option<u32>,
    },
}

/// The fields of `preprocessor_config.json` that Braid reads, with Hugging Face's defaults.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ImageProcessorConfig {
    /// Resize before cropping.
    #[serde(default = "yes")]
    pub do_resize: bool,
    /// Resize target.
    #[serde(default = "default_size")]
    pub size: SizeSpec,
    /// Pillow filter number (3 = bicubic).
    #[serde(default = "bicubic")]
    pub resample: u32,
    /// Centre-crop to `crop_size`.
    #[serde(default)]
    pub do_center_crop: bool,
    /// Crop target.
    #[serde(default)]
    pub crop_size: Option<SizeSpec>,
    /// Multiply by `rescale_factor`.
    #[serde(default = "yes")]
    pub do_rescale: bool,
    /// Usually 1/255.
    #[serde(default = "inv255")]
    pub rescale_factor: f64,
    /// Subtract `image_mean`, divide by `image_std`.
    #[serde(default = "yes")]
    pub do_normalize: bool,
    /// Per-channel mean.
    #[serde(default = "half3")]
    pub image_mean: [f64; 3],
    /// Per-channel standard deviation.
    #[serde(default = "half3")]
    pub image_std: [f64; 3],
}

fn yes() -> bool {
    true
}
fn default_size() -> SizeSpec {
    SizeSpec::Int(224)
}
fn bicubic() -> u32 {
    3
}
fn inv255() -> f64 {
    1.0 / 255.0
}
fn half3() -> [f64; 3] {
    [0.5; 3]
}

/// A configured preprocessor.
#[derive(Debug, Clone)]
pub struct ImageProcessor {
    cfg: ImageProcessorConfig,
    filter: Filter,
}

impl ImageProcessor {
    /// Checks the configuration: filter known, sizes present, non-zero and within
    /// [`PIXELS`], and the numbers that scale pixels finite (a zero or NaN `image_std`
    /// would make every embedding NaN).
    pub fn new(cfg: ImageProcessorConfig) -> Result<Self> {
        let filter = Filter::from_pil(cfg.resample)?;
        if cfg.do_center_crop && cfg.crop_size.is_none() {
            return Err(Error::config(
                "crop_size",
                "do_center_crop is set but crop_size is missing",
            ));
        }
        check_size(cfg.size, "size")?;
        if let Some(crop) = cfg.crop_size {
            check_size(crop, "crop_size")?;
        }
        if cfg.do_rescale && !(cfg.rescale_factor.is_finite() && cfg.rescale_factor > 0.0) {
            return Err(Error::config(
                "rescale_factor",
                format!("must be a finite number > 0, got {}", cfg.rescale_factor),
            ));
        }
        if cfg.do_normalize {
            if let Some(m) = cfg.image_mean.iter().find(|m| !m.is_finite()) {
                return Err(Error::config(
                    "image_mean",
                    format!("must hold finite numbers, got {m}"),
                ));
            }
            if let Some(s) = cfg.image_std.iter().find(|s| !(s.is_finite() && **s != 0.0)) {
                return Err(Error::config(
                    "image_std",
                    format!("must hold finite non-zero numbers, got {s}"),
                ));
            }
        }
        Ok(Self { cfg, filter })
    }

    /// Reads `preprocessor_config.json`; a bad value is an error naming the file and field.
    pub fn from_json_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let cfg = serde_json::from_str(&text).map_err(|e| Error::format(path, e.to_string()))?;
        Self::new(cfg).map_err(|e| Error::format(path, e.to_string()))
    }

    /// The configuration.
    pub fn config(&self) -> &ImageProcessorConfig {
        &self.cfg
    }

    /// Resize and crop, still 8-bit. img: [h, w, 3] -> [H, W, 3]
    pub fn resize_and_crop(&self, img: &RgbImage) -> Result<RgbImage> {
        let mut img = img.clone();
        if self.cfg.do_resize {
            let (w, h) = self.resize_target(img.width(), img.height())?;
            img = resize_rgb(&img, w, h, self.filter)?;
        }
        if let (true, Some(crop)) = (self.cfg.do_center_crop, self.cfg.crop_size) {
            let (cw, ch) = fixed_size(crop, "crop_size")?;
            img = center_crop(&img, cw, ch)?;
        }
        Ok(img)
    }

    /// The full pipeline. img: [h, w, 3] u8 -> [3, H, W] f32
    pub fn preprocess(&self, img: &RgbImage, device: &Device) -> Result<Tensor> {
        let img = self.resize_and_crop(img)?;
        let (w, h) = (img.width() as usize, img.height() as usize);
        let mut out = vec![0f32; 3 * h * w];
        for (i, p) in img.pixels().enumerate() {
            for c in 0..3 {
                let mut v = f64::from(p.0[c]);
                if self.cfg.do_rescale {
                    v *= self.cfg.rescale_factor;
                }
                if self.cfg.do_normalize {
                    v = (v - self.cfg.image_mean[c]) / self.cfg.image_std[c];
                }
                out[c * h * w + i] = v as f32;
            }
        }
        Ok(Tensor::from_vec(out, (3, h, w), device)?)
    }

    /// (width, height) after resizing a `w x h` image.
    fn resize_target(&self, w: u32, h: u32) -> Result<(u32, u32)> {
        let short = match self.cfg.size {
            SizeSpec::Int(s) if self.cfg.do_center_crop => s,
            SizeSpec::Dict { shortest_edge: Some(s), .. } => s,
            spec => return fixed_size(spec, "size"),
        };
        // As `get_resize_output_image_size(default_to_square=False)`: int() truncates
        // (and `as` saturates, so an extreme aspect ratio is caught below).
        let long = |l: u32, s: u32| (f64::from(short) * f64::from(l) / f64::from(s.max(1))) as u32;
        let (tw, th) = if w <= h { (short, long(h, w)) } else { (long(w, h), short) };
        let what = format!("shortest edge {short} resizes a {w}x{h} image to {tw}x{th}, which");
        PIXELS.check(u64::from(tw) * u64::from(th), &what).map_err(|m| Error::config("size", m))?;
        Ok((tw, th))
    }
}

/// A size spec's numbers are non-zero and a fixed size fits [`PIXELS`].
fn check_size(spec: SizeSpec, field: &str) -> Result<()> {
    let (w, h, edge) = match spec {
        SizeSpec::Int(s) => (Some(s), Some(s), None),
        SizeSpec::Dict { shortest_edge, height, width } => (width, height, shortest_edge),
    };
    if [w, h, edge].contains(&Some(0)) {
        return Err(Error::config(field, "sizes must be at least 1 pixel"));
    }
    if let (Some(w), Some(h)) = (w, h) {
        PIXELS
            .check(u64::from(w) * u64::from(h), &format!("{w}x{h}"))
            .map_err(|m| Error::config(field, m))?;
    }
    // A shortest edge makes every image at least edge x edge: too large for any image is
    // the config's fault, not the image's.
    let square = edge.or(match spec {
        SizeSpec::Int(s) => Some(s),
        SizeSpec::Dict { .. } => None,
    });
    if let Some(e) = square {
        PIXELS
            .check(
                u64::from(e) * u64::from(e),
                &format!("a shortest edge of {e} (at least {e}x{e})"),
            )
            .map_err(|m| Error::config(field, m))?;
    }
    Ok(())
}

/// (width, height) of a fixed-size spec.
fn fixed_size(spec: SizeSpec, field: &str) -> Result<(u32, u32)> {
    match spec {
        SizeSpec::Int(s) => Ok((s, s)),
        SizeSpec::Dict { height: Some(h), width: Some(w), .. } => Ok((w, h)),
        SizeSpec::Dict { .. } => {
            Err(Error::config(field, "expected an integer or {height, width}"))
        }
    }
}

/// The central `w x h` window; top-left at `((H - h) / 2, (W - w) / 2)` rounded down.
fn center_crop(img: &RgbImage, w: u32, h: u32) -> Result<RgbImage> {
    if w > img.width() || h > img.height() {
        return Err(Error::Invalid(format!(
            "crop {w}x{h} is larger than the resized image {}x{}",
            img.width(),
            img.height()
        )));
    }
    let (left, top) = ((img.width() - w) / 2, (img.height() - h) / 2);
    Ok(image::imageops::crop_imm(img, left, top, w, h).to_image())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::load_rgb;
    use std::path::PathBuf;

    fn fixture(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/image").join(name)
    }

    /// Mean and max |ours - HF| in 0..255 units, before normalisation.
    fn diff(file: &str, kind: &str) -> (f64, u8) {
        let proc =
            ImageProcessor::from_json_file(&fixture(&format!("preprocessor_{kind}.json"))).unwrap();
        let ours = proc.resize_and_crop(&load_rgb(&fixture(file)).unwrap()).unwrap();
        let expected =
            candle_core::safetensors::load(fixture("expected.safetensors"), &Device::Cpu).unwrap();
        let stem = file.split('.').next().unwrap();
        let want = expected[&format!("{stem}.{kind}")].to_vec3::<u8>().unwrap();
        assert_eq!(
            (want.len(), want[0].len(), want[0][0].len()),
            (3, ours.height() as usize, ours.width() as usize)
        );
        let (mut sum, mut max) = (0u64, 0u8);
        for (x, y, p) in ours.enumerate_pixels() {
            for (c, plane) in want.iter().enumerate() {
                let d = p.0[c].abs_diff(plane[y as usize][x as usize]);
                sum += u64::from(d);
                max = max.max(d);
            }
        }
        (sum as f64 / (3 * ours.width() * ours.height()) as f64, max)
    }

    #[test]
    fn matches_hf_clip_and_vit_processors_on_real_photos() {
        for file in
            ["china.jpg", "flower.jpg", "gray.png", "rgba.png", "palette.gif", "exif_rot6.jpg"]
        {
            for kind in ["clip", "vit"] {
                let (mean, max) = diff(file, kind);
                eprintln!("{file} {kind}: mean abs diff {mean:.4}/255, max {max}/255");
                assert!(mean <= 1.0, "{file} {kind}: mean abs diff {mean}/255");
            }
        }
    }

    #[test]
    fn normalisation_uses_mean_and_std() {
        let proc = ImageProcessor::from_json_file(&fixture("preprocessor_clip.json")).unwrap();
        let img = RgbImage::from_pixel(80, 100, image::Rgb([255, 0, 128]));
        let t = proc.preprocess(&img, &Device::Cpu).unwrap();
        assert_eq!(t.dims(), &[3, 64, 64]);
        let px = t.to_vec3::<f32>().unwrap();
        assert!((px[0][5][5] - ((1.0 - 0.48145466) / 0.26862954) as f32).abs() < 1e-5);
        assert!((px[1][5][5] - ((0.0 - 0.4578275) / 0.26130258) as f32).abs() < 1e-5);
    }

    #[test]
    fn alloc_image_processor_sizes() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            (r#"{"size": {"height": 100000, "width": 100000}}"#, "`size`: 100000x100000 needs 10000000000 pixels, over the limit of 178956970 pixels (set BRAID_MAX_PIXELS to raise it)"),
            (r#"{"size": 0}"#, "`size`: sizes must be at least 1 pixel"),
            (r#"{"size": {"shortest_edge": 0}}"#, "`size`"),
            (r#"{"size": {"shortest_edge": 1000000}}"#, "`size`: a shortest edge of 1000000 (at least 1000000x1000000) needs 1000000000000 pixels"),
            (r#"{"size": 224, "do_center_crop": true, "crop_size": {"height": 4000000, "width": 4000000}}"#, "`crop_size`"),
        ];
        for (i, (json, want)) in cases.into_iter().enumerate() {
            let p = dir.path().join(format!("preprocessor_config_{i}.json"));
            std::fs::write(&p, json).unwrap();
            let e = ImageProcessor::from_json_file(&p).unwrap_err().to_string();
            assert!(
                e.contains(&format!("preprocessor_config_{i}.json"))
                    && e.contains(want)
                    && !e.contains('\n'),
                "{e}"
            );
        }
        // A shortest edge that is fine for photos but not for a 1x100000 strip.
        let cfg: ImageProcessorConfig =
            serde_json::from_str(r#"{"size": {"shortest_edge": 4096}}"#).unwrap();
        let e = ImageProcessor::new(cfg)
            .unwrap()
            .resize_and_crop(&RgbImage::new(1, 100_000))
            .unwrap_err()
            .to_string();
        assert!(e.contains("`size`: shortest edge 4096 resizes a 1x100000 image to 4096x409600000, which needs"), "{e}");
    }

    #[test]
    fn nan_image_processor_std_and_mean() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            (
                r#"{"image_std": [0.5, 0.0, 0.5]}"#,
                "`image_std`: must hold finite non-zero numbers, got 0",
            ),
            (r#"{"image_std": [0.5, -0.0, 0.5]}"#, "`image_std`"),
            (r#"{"rescale_factor": 0}"#, "`rescale_factor`"),
        ];
        for (i, (json, want)) in cases.into_iter().enumerate() {
            let p = dir.path().join(format!("pre_{i}.json"));
            std::fs::write(&p, json).unwrap();
            let e = ImageProcessor::from_json_file(&p).unwrap_err().to_string();
            assert!(e.contains(&format!("pre_{i}.json")) && e.contains(want), "{e}");
        }
        // JSON has no NaN; a config built in code can.
        let cfg = |f: fn(&mut ImageProcessorConfig)| {
            let mut c: ImageProcessorConfig = serde_json::from_str("{}").unwrap();
            f(&mut c);
            ImageProcessor::new(c).unwrap_err().to_string()
        };
        assert!(cfg(|c| c.image_std[1] = f64::NAN).contains("`image_std`"));
        assert!(cfg(|c| c.image_mean[0] = f64::INFINITY).contains("`image_mean`"));
        assert!(cfg(|c| c.rescale_factor = f64::NAN).contains("`rescale_factor`"));
    }

    #[test]
    fn old_integer_sizes_are_read() {
        let cfg: ImageProcessorConfig =
            serde_json::from_str(r#"{"size": 224, "crop_size": 224, "do_center_crop": true}"#)
                .unwrap();
        let proc = ImageProcessor::new(cfg).unwrap();
        assert_eq!(proc.resize_target(640, 427).unwrap(), (335, 224));
    }
}
