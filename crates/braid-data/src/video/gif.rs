//! Animated GIFs through the `image` crate (frames composited onto the full canvas). Each
//! frame is full-canvas RGB, so the canvas is checked before decoding starts and every
//! frame against the decode budget ([`DecodeBudget`]) as it arrives.

use std::io::BufReader;
use std::path::Path;

use braid_core::{Error, Result};
use image::codecs::gif::GifDecoder;
use image::{AnimationDecoder, DynamicImage, ImageDecoder, RgbImage};

use super::budget::DecodeBudget;
use braid_core::limits::PIXELS;

/// All frames of a GIF as RGB (transparency dropped), and its frame rate from the mean
/// frame delay (`None` when the delays are zero).
pub fn decode_gif(path: &Path) -> Result<(Vec<RgbImage>, Option<f64>)> {
    decode_gif_within(path, &mut DecodeBudget::default())
}

pub(crate) fn decode_gif_within(
    path: &Path,
    budget: &mut DecodeBudget,
) -> Result<(Vec<RgbImage>, Option<f64>)> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let bad = |e: image::ImageError| Error::format(path, format!("not a readable GIF: {e}"));
    let mut decoder = GifDecoder::new(BufReader::new(file)).map_err(bad)?;
    let (w, h) = decoder.dimensions();
    PIXELS
        .check(u64::from(w) * u64::from(h), &format!("the GIF's {w}x{h} canvas"))
        .map_err(|m| Error::format(path, m))?;
    // A frame may claim to be larger than the canvas (65535x65535 in a 6x4 GIF): the
    // decoder allocates each frame's own buffer, so that is bounded too (RGBA bytes).
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(PIXELS.get().saturating_mul(4));
    decoder.set_limits(limits).map_err(bad)?;
    let (mut rgb, mut total_ms) = (Vec::new(), 0f64);
    for frame in decoder.into_frames() {
        let frame = frame.map_err(|e| match e {
            image::ImageError::Limits(_) => Error::format(
                path,
                format!(
                    "frame {}: decoding it needs more than the limit of {} pixels (set {} to raise it)",
                    rgb.len(),
                    PIXELS.get(),
                    PIXELS.env
                ),
            ),
            e => bad(e),
        })?;
        let (fw, fh) = frame.buffer().dimensions();
        budget.add(fw, fh).map_err(|m| Error::format(path, m))?;
        let (n, d) = frame.delay().numer_denom_ms();
        total_ms += f64::from(n) / f64::from(d.max(1));
        rgb.push(DynamicImage::ImageRgba8(frame.into_buffer()).to_rgb8());
    }
    if rgb.is_empty() {
        return Err(Error::format(path, "the GIF has no frames"));
    }
    let fps = (total_ms > 0.0).then(|| rgb.len() as f64 * 1000.0 / total_ms);
    Ok((rgb, fps))
}

#[cfg(test)]
mod tests {
    use super::*;
    use braid_core::limits::Limit;

    /// A 65535x65535 canvas (two-colour palette) holding one 1x1 frame: 43 bytes.
    const BIG_CANVAS: &[u8] = b"GIF89a\xff\xff\xff\xff\x80\x00\x00\x00\x00\x00\xff\xff\xff\
        \x2c\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02\x44\x01\x00;";

    fn write_gif(path: &Path, frames: usize, side: u32) {
        let file = std::fs::File::create(path).unwrap();
        let mut enc = image::codecs::gif::GifEncoder::new(file);
        let delay = image::Delay::from_numer_denom_ms(100, 1);
        let gif_frames = (0..frames).map(|t| {
            let img =
                image::RgbaImage::from_pixel(side, side, image::Rgba([t as u8 * 40, 0, 0, 255]));
            image::Frame::from_parts(img, 0, 0, delay)
        });
        enc.encode_frames(gif_frames).unwrap();
    }

    #[test]
    fn alloc_gif_frames_over_budget() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clip.gif");
        write_gif(&path, 5, 8);
        let (frames, fps) = decode_gif(&path).unwrap();
        assert_eq!((frames.len(), fps), (5, Some(10.0)));
        let mut budget = DecodeBudget::new(
            Limit::new("BRAID_TEST_UNSET_FRAMES", 100, "frames"),
            Limit::new("BRAID_TEST_UNSET_PIXELS", 3 * 64, "pixels"),
        );
        let e = decode_gif_within(&path, &mut budget).unwrap_err().to_string();
        assert!(
            e.contains("clip.gif")
                && e.contains("holding 4 decoded frames needs 256 pixels")
                && e.contains("BRAID_TEST_UNSET_PIXELS"),
            "{e}"
        );
        // A header-only GIF claiming a 65535x65535 canvas: refused before any frame.
        let big = dir.path().join("big.gif");
        std::fs::write(&big, BIG_CANVAS).unwrap();
        let e = decode_gif(&big).unwrap_err().to_string();
        assert!(e.contains("big.gif") && e.contains("65535x65535 canvas"), "{e}");
    }

    /// A 1x1 canvas whose frame claims 65535x65535 (found by fuzzing: 4 GB written).
    #[test]
    fn alloc_gif_frame_larger_than_canvas() {
        let dir = tempfile::tempdir().unwrap();
        let mut lie = BIG_CANVAS.to_vec();
        lie[6..10].copy_from_slice(&[1, 0, 1, 0]);
        lie[24..28].copy_from_slice(&[0xff; 4]);
        let p = dir.path().join("lie.gif");
        std::fs::write(&p, lie).unwrap();
        let e = decode_gif(&p).unwrap_err().to_string();
        assert!(
            e.contains("lie.gif") && e.contains("frame 0") && e.contains("BRAID_MAX_PIXELS"),
            "{e}"
        );
    }
}
