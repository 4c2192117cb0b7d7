//! Decoding an image file to RGB as Hugging Face's `load_image` + `convert_to_rgb` do:
//! the format sniffed from the bytes, a decompression-bomb limit checked before any pixel
//! is decoded, EXIF orientation applied (`PIL.ImageOps.exif_transpose`), and gray,
//! palette and alpha images converted to RGB (transparency composited onto white).
//! Reference: `transformers.image_utils.load_image`, `image_transforms.convert_to_rgb`.

use std::path::Path;

use braid_core::{Error, Result};
use image::{DynamicImage, ImageDecoder, ImageReader, RgbImage, RgbaImage};

/// Largest image accepted by default, in pixels: Pillow's `DecompressionBombError`
/// threshold (twice `Image.MAX_IMAGE_PIXELS`); `BRAID_MAX_PIXELS` raises it
/// ([`braid_core::limits::PIXELS`]).
pub const MAX_PIXELS: u64 = braid_core::limits::PIXELS.default;

/// Reads `path` into an upright RGB image. Every error names the file.
pub fn load_rgb(path: &Path) -> Result<RgbImage> {
    if path.is_dir() {
        return Err(Error::format(path, "is a directory, not an image"));
    }
    let reader = ImageReader::open(path).map_err(|e| Error::io(path, e))?;
    let reader = reader.with_guessed_format().map_err(|e| Error::io(path, e))?;
    if reader.format() == Some(image::ImageFormat::Jpeg) && !file_jpeg_has_its_end(path)? {
        return Err(truncated_jpeg(path));
    }
    decode(reader, path)
}

/// Decodes an image held in memory (an upload, a `data:` URI) as [`load_rgb`] decodes a
/// file; `name` stands for it in errors.
pub fn decode_rgb(bytes: &[u8], name: &Path) -> Result<RgbImage> {
    let reader = ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| Error::io(name, e))?;
    let tail = &bytes[bytes.len().saturating_sub(JPEG_TAIL as usize)..];
    if reader.format() == Some(image::ImageFormat::Jpeg) && !jpeg_has_its_end(bytes, tail) {
        return Err(truncated_jpeg(name));
    }
    decode(reader, name)
}

fn truncated_jpeg(name: &Path) -> Error {
    Error::format(
        name,
        "truncated JPEG: no end-of-image marker (the decoder would fill the rest with gray)",
    )
}

/// The format-sniffed `reader` decoded within the pixel budget, upright, in RGB.
fn decode<R: std::io::BufRead + std::io::Seek>(
    reader: ImageReader<R>,
    name: &Path,
) -> Result<RgbImage> {
    if reader.format().is_none() {
        return Err(Error::format(
            name,
            "not a recognised image (known: png, jpeg, gif, webp, bmp)",
        ));
    }
    let bad = |e: image::ImageError| Error::format(name, format!("cannot decode: {e}"));
    let mut decoder = reader.into_decoder().map_err(bad)?;
    let (w, h) = decoder.dimensions();
    let pixels = u64::from(w) * u64::from(h);
    braid_core::limits::PIXELS
        .check(pixels, &format!("decoding this {w}x{h} image (a decompression-bomb check)"))
        .map_err(|m| Error::format(name, m))?;
    let orientation = decoder.orientation().unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut img = DynamicImage::from_decoder(decoder).map_err(bad)?;
    img.apply_orientation(orientation);
    Ok(to_rgb(img))
}

/// Bytes at the end of a JPEG searched for its end-of-image marker (after it may come
/// padding or another application's trailer).
const JPEG_TAIL: u64 = 64 * 1024;

/// Whether JPEG data starting with `start` ends with its end-of-image marker `FF D9`
/// somewhere in `tail` (its last [`JPEG_TAIL`] bytes). In the entropy-coded data a `FF`
/// byte is always followed by `00` or a restart marker, so `FF D9` is the end. Without
/// it the data was cut short: the decoder fills the missing rows with gray and reports
/// nothing, where Pillow raises "image file is truncated". Data not starting `FF D8` is
/// not JPEG at all (named .jpg): the decoder's error says so.
fn jpeg_has_its_end(start: &[u8], tail: &[u8]) -> bool {
    !start.starts_with(&[0xFF, 0xD8]) || tail.windows(2).any(|w| w == [0xFF, 0xD9])
}

/// [`jpeg_has_its_end`] for a file, reading only its start and its tail.
fn file_jpeg_has_its_end(path: &Path) -> Result<bool> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut start = [0u8; 2];
    if file.read_exact(&mut start).is_err() {
        return Ok(true);
    }
    let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(JPEG_TAIL))).map_err(|e| Error::io(path, e))?;
    let mut tail = Vec::new();
    file.take(JPEG_TAIL).read_to_end(&mut tail).map_err(|e| Error::io(path, e))?;
    Ok(jpeg_has_its_end(&start, &tail))
}

/// Gray and palette images are replicated to RGB; images with alpha are composited onto
/// opaque white in Pillow's `alpha_composite` fixed-point arithmetic.
pub(crate) fn to_rgb(img: DynamicImage) -> RgbImage {
    if img.color().has_alpha() {
        over_white(&img.to_rgba8())
    } else {
        img.to_rgb8()
    }
}

/// Pillow `AlphaComposite.c` with an opaque white destination (PRECISION_BITS = 7).
fn over_white(rgba: &RgbaImage) -> RgbImage {
    RgbImage::from_fn(rgba.width(), rgba.height(), |x, y| {
        let p = rgba.get_pixel(x, y).0;
        let coef1 = u32::from(p[3]) << 7;
        let coef2 = (255 << 7) - coef1;
        let blend = |c: u8| {
            let tmp = u32::from(c) * coef1 + 255 * coef2 + (0x80 << 7);
            ((((tmp >> 8) + tmp) >> 8) >> 7) as u8
        };
        image::Rgb([blend(p[0]), blend(p[1]), blend(p[2])])
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn fixture(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/image").join(name)
    }

    /// A JPEG cut short decoded with its missing rows filled gray and no word of it.
    #[test]
    fn silent_truncated_jpeg() {
        let whole = std::fs::read(fixture("china.jpg")).unwrap();
        assert!(load_rgb(&fixture("china.jpg")).is_ok());
        let dir = tempfile::tempdir().unwrap();
        let cut = dir.path().join("cut.jpg");
        std::fs::write(&cut, &whole[..whole.len() * 2 / 3]).unwrap();
        let err = load_rgb(&cut).unwrap_err().to_string();
        assert!(err.contains("cut.jpg") && err.contains("truncated JPEG"), "{err}");
        // Bytes after the end marker (an application's trailer) are no truncation.
        let trailer = dir.path().join("trailer.jpg");
        std::fs::write(&trailer, [whole.as_slice(), b"trailing bytes"].concat()).unwrap();
        assert!(load_rgb(&trailer).is_ok());
        // The same from memory.
        let name = Path::new("upload");
        let cut = decode_rgb(&whole[..whole.len() * 2 / 3], name).unwrap_err().to_string();
        assert!(cut.contains("upload") && cut.contains("truncated JPEG"), "{cut}");
        assert_eq!(decode_rgb(&whole, name).unwrap(), load_rgb(&fixture("china.jpg")).unwrap());
    }

    #[test]
    fn bytes_decode_as_files_do() {
        for f in ["flower.jpg", "gray.png", "palette.gif", "exif_rot6.jpg"] {
            let bytes = std::fs::read(fixture(f)).unwrap();
            assert_eq!(
                decode_rgb(&bytes, Path::new(f)).unwrap(),
                load_rgb(&fixture(f)).unwrap(),
                "{f}"
            );
        }
        let bomb = std::fs::read(fixture("bomb_20000x20000.png")).unwrap();
        let e = decode_rgb(&bomb, Path::new("bomb")).unwrap_err().to_string();
        assert!(e.contains("decompression-bomb"), "{e}");
        let e = decode_rgb(b"not an image", Path::new("junk")).unwrap_err().to_string();
        assert!(e.contains("junk") && e.contains("not a recognised image"), "{e}");
    }

    #[test]
    fn bomb_directory_and_garbage_are_clear_errors() {
        let err = load_rgb(&fixture("bomb_20000x20000.png")).unwrap_err().to_string();
        assert!(
            err.contains("bomb_20000x20000.png")
                && err.contains("decompression-bomb")
                && err.contains("set BRAID_MAX_PIXELS to raise it"),
            "{err}"
        );
        let err = load_rgb(&fixture("")).unwrap_err().to_string();
        assert!(err.contains("directory"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.jpg");
        std::fs::write(&junk, b"definitely not an image").unwrap();
        let err = load_rgb(&junk).unwrap_err().to_string();
        assert!(err.contains("junk.jpg") && err.contains("cannot decode"), "{err}");
        let junk = dir.path().join("junk.bin");
        std::fs::write(&junk, b"definitely not an image").unwrap();
        let err = load_rgb(&junk).unwrap_err().to_string();
        assert!(err.contains("junk.bin") && err.contains("not a recognised image"), "{err}");
        let err = load_rgb(&dir.path().join("missing.png")).unwrap_err().to_string();
        assert!(err.contains("missing.png"), "{err}");
    }

    #[test]
    fn exif_orientation_is_applied() {
        // Stored 90x60 with orientation 6: upright it is 60 wide, 90 tall.
        let img = load_rgb(&fixture("exif_rot6.jpg")).unwrap();
        assert_eq!(img.dimensions(), (60, 90));
    }

    #[test]
    fn alpha_is_composited_onto_white() {
        let rgba = RgbaImage::from_pixel(1, 1, image::Rgba([0, 100, 200, 0]));
        assert_eq!(over_white(&rgba).get_pixel(0, 0).0, [255, 255, 255]);
        let rgba = RgbaImage::from_pixel(1, 1, image::Rgba([0, 100, 200, 255]));
        assert_eq!(over_white(&rgba).get_pixel(0, 0).0, [0, 100, 200]);
    }
}
