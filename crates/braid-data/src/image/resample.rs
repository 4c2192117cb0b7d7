//! Pillow's antialiased resampling (`Image.resize` with BILINEAR, BICUBIC, LANCZOS, BOX or
//! HAMMING), reproduced in its 8-bit fixed-point arithmetic so that pixels match Pillow's
//! exactly: separable filters whose support widens with the downscale factor, horizontal
//! pass first, each pass rounded to u8. Reference: Pillow `src/libImaging/Resample.c`
//! (`precompute_coeffs`, `normalize_coeffs_8bpc`, `ImagingResampleHorizontal_8bpc`).

use braid_core::limits::PIXELS;
use braid_core::{Error, Result};
use image::RgbImage;

/// Fixed-point fraction bits of Pillow's 8-bit resampler (32 - 8 - 2).
const PRECISION_BITS: u32 = 22;

/// A resampling filter, numbered as `PIL.Image.Resampling` (the `resample` field of
/// `preprocessor_config.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    /// Lanczos-3 (`1`).
    Lanczos,
    /// Triangle (`2`).
    Bilinear,
    /// Keys cubic with a = -0.5 (`3`).
    Bicubic,
    /// Box (`4`).
    Box,
    /// Hamming window (`5`).
    Hamming,
}

impl Filter {
    /// The filter Pillow numbers `code`; nearest (`0`) is not supported.
    pub fn from_pil(code: u32) -> Result<Self> {
        Ok(match code {
            1 => Self::Lanczos,
            2 => Self::Bilinear,
            3 => Self::Bicubic,
            4 => Self::Box,
            5 => Self::Hamming,
            _ => {
                return Err(Error::config(
                    "resample",
                    format!("{code} is not supported; known: 1 lanczos, 2 bilinear, 3 bicubic, 4 box, 5 hamming"),
                ))
            }
        })
    }

    fn support(self) -> f64 {
        match self {
            Self::Box => 0.5,
            Self::Bilinear | Self::Hamming => 1.0,
            Self::Bicubic => 2.0,
            Self::Lanczos => 3.0,
        }
    }

    fn weight(self, x: f64) -> f64 {
        let ax = x.abs();
        match self {
            Self::Box => f64::from(u8::from(x > -0.5 && x <= 0.5)),
            Self::Bilinear => (1.0 - ax).max(0.0),
            Self::Hamming => {
                if ax >= 1.0 {
                    0.0
                } else {
                    sinc(ax) * (0.54 + 0.46 * (ax * std::f64::consts::PI).cos())
                }
            }
            Self::Bicubic => {
                let a = -0.5;
                if ax < 1.0 {
                    ((a + 2.0) * ax - (a + 3.0)) * ax * ax + 1.0
                } else if ax < 2.0 {
                    (((ax - 5.0) * ax + 8.0) * ax - 4.0) * a
                } else {
                    0.0
                }
            }
            Self::Lanczos => {
                if ax < 3.0 {
                    sinc(x) * sinc(x / 3.0)
                } else {
                    0.0
                }
            }
        }
    }
}

fn sinc(x: f64) -> f64 {
    if x == 0.0 {
        1.0
    } else {
        let px = x * std::f64::consts::PI;
        px.sin() / px
    }
}

/// For each output index: the first input index and the fixed-point weights.
struct Coeffs {
    first: Vec<usize>,
    weights: Vec<Vec<i32>>,
}

/// Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc` for `in_size -> out_size`.
fn coeffs(in_size: usize, out_size: usize, filter: Filter) -> Coeffs {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filter.support() * filterscale;
    let (mut first, mut weights) = (Vec::with_capacity(out_size), Vec::with_capacity(out_size));
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        // `(int)` in C truncates toward zero.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
        let w: Vec<f64> = (xmin..xmax.max(xmin))
            .map(|x| filter.weight((x as f64 - center + 0.5) / filterscale))
            .collect();
        let total: f64 = w.iter().sum();
        let fixed = w
            .iter()
            .map(|&k| {
                let k = if total != 0.0 { k / total } else { k };
                let s = k * f64::from(1u32 << PRECISION_BITS);
                (if k < 0.0 { s - 0.5 } else { s + 0.5 }) as i32
            })
            .collect();
        first.push(xmin);
        weights.push(fixed);
    }
    Coeffs { first, weights }
}

fn clip8(acc: i32) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// One output sample: `sum(src[first + i * stride] * w[i])` rounded like Pillow.
fn sample(src: &[u8], first: usize, stride: usize, w: &[i32]) -> u8 {
    let mut acc: i32 = 1 << (PRECISION_BITS - 1);
    for (i, &k) in w.iter().enumerate() {
        acc += i32::from(src[first + i * stride]) * k;
    }
    clip8(acc)
}

/// Resizes an RGB image to `width x height` exactly as Pillow's `Image.resize(filter)`
/// (no `reducing_gap`); the output and the intermediate image must fit
/// [`PIXELS`]. img: [h, w, 3] u8 -> [height, width, 3] u8
pub fn resize_rgb(img: &RgbImage, width: u32, height: u32, filter: Filter) -> Result<RgbImage> {
    if width == 0 || height == 0 {
        return Err(Error::Invalid(format!("cannot resize to {width}x{height}")));
    }
    let (w_in, h_in) = (img.width() as usize, img.height() as usize);
    // The horizontal pass makes `width x h_in`, the vertical one `width x height`.
    let most = u64::from(width) * u64::from(height.max(img.height()));
    let what = format!("resizing a {w_in}x{h_in} image to {width}x{height}");
    PIXELS.check(most, &what).map_err(Error::Invalid)?;
    let (w, h) = (width as usize, height as usize);
    let mut buf = img.as_raw().clone();
    if w != w_in {
        let c = coeffs(w_in, w, filter);
        let mut out = vec![0u8; w * h_in * 3];
        for y in 0..h_in {
            for x in 0..w {
                for ch in 0..3 {
                    let first = (y * w_in + c.first[x]) * 3 + ch;
                    out[(y * w + x) * 3 + ch] = sample(&buf, first, 3, &c.weights[x]);
                }
            }
        }
        buf = out;
    }
    if h != h_in {
        let c = coeffs(h_in, h, filter);
        let mut out = vec![0u8; w * h * 3];
        for y in 0..h {
            for x in 0..w * 3 {
                out[y * w * 3 + x] = sample(&buf, c.first[y] * w * 3 + x, w * 3, &c.weights[y]);
            }
        }
        buf = out;
    }
    RgbImage::from_raw(width, height, buf)
        .ok_or_else(|| Error::Invalid("resize buffer size".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_sum_to_one_in_fixed_point() {
        for f in [Filter::Bicubic, Filter::Bilinear, Filter::Lanczos, Filter::Box, Filter::Hamming]
        {
            let c = coeffs(427, 72, f);
            for w in &c.weights {
                let s: i64 = w.iter().map(|&k| i64::from(k)).sum();
                assert!((s - (1i64 << PRECISION_BITS)).abs() <= w.len() as i64, "{f:?} {s}");
            }
        }
    }

    #[test]
    fn constant_image_stays_constant_and_same_size_is_identity() {
        let img = RgbImage::from_pixel(31, 17, image::Rgb([200, 10, 77]));
        let out = resize_rgb(&img, 9, 40, Filter::Bicubic).unwrap();
        assert!(out.pixels().all(|p| p.0 == [200, 10, 77]));
        let noisy = RgbImage::from_fn(8, 6, |x, y| {
            image::Rgb([(x * 30) as u8, (y * 40) as u8, ((x * y) % 256) as u8])
        });
        assert_eq!(resize_rgb(&noisy, 8, 6, Filter::Bicubic).unwrap(), noisy);
    }

    #[test]
    fn alloc_resize_to_a_huge_size() {
        let img = RgbImage::from_pixel(4, 4, image::Rgb([1, 2, 3]));
        let e = resize_rgb(&img, 100_000, 100_000, Filter::Bicubic).unwrap_err().to_string();
        assert!(
            e.contains("resizing a 4x4 image to 100000x100000 needs 10000000000 pixels")
                && e.contains("BRAID_MAX_PIXELS"),
            "{e}"
        );
        // Tall input, wide output: the intermediate image counts too.
        let tall = RgbImage::new(1, 200_000);
        assert!(resize_rgb(&tall, 20_000, 1, Filter::Bilinear).is_err());
    }

    #[test]
    fn nearest_is_a_clear_error() {
        assert!(Filter::from_pil(0).unwrap_err().to_string().contains("resample"));
    }
}
