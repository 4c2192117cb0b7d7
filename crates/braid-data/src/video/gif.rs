//! Animated GIFs through the `image` crate (frames composited onto the full canvas).

use std::io::BufReader;
use std::path::Path;

use braid_core::{Error, Result};
use image::codecs::gif::GifDecoder;
use image::{AnimationDecoder, DynamicImage, RgbImage};

/// All frames of a GIF as RGB (transparency dropped), and its frame rate from the mean
/// frame delay (`None` when the delays are zero).
pub fn decode_gif(path: &Path) -> Result<(Vec<RgbImage>, Option<f64>)> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let bad = |e: image::ImageError| Error::format(path, format!("not a readable GIF: {e}"));
    let frames = GifDecoder::new(BufReader::new(file))
        .map_err(bad)?
        .into_frames()
        .collect_frames()
        .map_err(bad)?;
    if frames.is_empty() {
        return Err(Error::format(path, "the GIF has no frames"));
    }
    let total_ms: f64 = frames
        .iter()
        .map(|f| {
            let (n, d) = f.delay().numer_denom_ms();
            f64::from(n) / f64::from(d.max(1))
        })
        .sum();
    let fps = (total_ms > 0.0).then(|| frames.len() as f64 * 1000.0 / total_ms);
    let rgb =
        frames.into_iter().map(|f| DynamicImage::ImageRgba8(f.into_buffer()).to_rgb8()).collect();
    Ok((rgb, fps))
}
