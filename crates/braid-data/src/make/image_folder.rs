//! Image-classification target sets in the `ImageFolder` layout
//! ([`crate::image::folder`]: `train/`, `val/`, `test/`, one folder per class, and
//! `classes.txt`), for the few-shot adapters (Tip-Adapter, TIP-X, SuS-X, CapS), whose
//! aligned encoders must never have seen them:
//!
//! - [`make_fashion_mnist`]: Fashion-MNIST (Xiao et al. 2017; Debian
//!   `dataset-fashion-mnist`, IDX files): the training pool and validation images from its
//!   training set, the test images from its test set;
//! - [`make_shapes_shift`]: coloured circles, rectangles and triangles in a style
//!   easy-VQA never shows: rotated, smaller, half of them outlines only, over striped and
//!   noisy backgrounds. Its 24 classes are easy-VQA's captions, so a model trained on easy-VQA
//!   has a zero-shot classifier for it, under a shift of style (as ImageNet-Sketch is to
//!   ImageNet).

use std::io::Read;
use std::path::{Path, PathBuf};

use braid_core::{Error, Result};
use image::{GrayImage, RgbImage};

use super::rng::Rng;
use crate::vqa::{COLORS, SHAPES};

/// Images per class of each split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FolderOptions {
    /// Training pool (the shots are drawn from it).
    pub train: usize,
    /// Validation (hyper-parameters are chosen on it).
    pub val: usize,
    /// Test.
    pub test: usize,
    /// Seed of the choices.
    pub seed: u64,
    /// Write into a folder that is not empty.
    pub force: bool,
}

impl Default for FolderOptions {
    fn default() -> Self {
        Self { train: 64, val: 16, test: 100, seed: 0, force: false }
    }
}

/// What a maker wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MadeFolder {
    /// The folder.
    pub dir: PathBuf,
    /// Classes.
    pub classes: usize,
    /// Images written per split (train, val, test).
    pub images: [usize; 3],
}

/// Fashion-MNIST's class names, in label order (folder names; `_` reads as a space).
pub const FASHION_CLASSES: [&str; 10] = [
    "t-shirt",
    "trousers",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle_boot",
];

/// The largest IDX payload read (the Fashion-MNIST training images are 47 MB).
const MAX_IDX_BYTES: usize = 64 << 20;

/// Writes Fashion-MNIST from the folder of its four `*-ubyte.gz` files into `out`.
pub fn make_fashion_mnist(src: &Path, out: &Path, o: &FolderOptions) -> Result<MadeFolder> {
    prepare(out, o.force)?;
    let (train_x, train_y) = (
        read_idx(&src.join("train-images-idx3-ubyte.gz"), 3)?,
        read_idx(&src.join("train-labels-idx1-ubyte.gz"), 1)?,
    );
    let (test_x, test_y) = (
        read_idx(&src.join("t10k-images-idx3-ubyte.gz"), 3)?,
        read_idx(&src.join("t10k-labels-idx1-ubyte.gz"), 1)?,
    );
    let classes: Vec<String> = FASHION_CLASSES.iter().map(|s| s.to_string()).collect();
    let mut images = [0; 3];
    // Pool and validation from the training set (disjoint), test from the test set; each
    // class's images taken in file order after a seeded shuffle of the indices.
    for (split, (x, y), take, skip) in [
        ("train", (&train_x, &train_y), o.train, 0),
        ("val", (&train_x, &train_y), o.val, o.train),
        ("test", (&test_x, &test_y), o.test, 0),
    ] {
        let (dims, pixels) = x;
        let (_, labels) = y;
        if dims.len() != 3 || dims[0] != labels.len() {
            return Err(Error::format(
                src,
                format!("IDX images {dims:?} and {} labels disagree", labels.len()),
            ));
        }
        let (h, w) = (dims[1], dims[2]);
        let mut order: Vec<usize> = (0..labels.len()).collect();
        // Pool and validation share one order of the training set, so they are disjoint.
        let source = if split == "test" { "test" } else { "train" };
        Rng::keyed(o.seed, source).shuffle(&mut order);
        for (c, name) in classes.iter().enumerate() {
            let dir = out.join(split).join(name);
            std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
            let rows: Vec<usize> = order
                .iter()
                .copied()
                .filter(|&i| usize::from(labels[i]) == c)
                .skip(skip)
                .take(take)
                .collect();
            if rows.len() < take {
                return Err(Error::format(
                    src,
                    format!("class {name} has too few images for {take} in {split}"),
                ));
            }
            for (j, &i) in rows.iter().enumerate() {
                let img = GrayImage::from_raw(
                    w as u32,
                    h as u32,
                    pixels[i * h * w..(i + 1) * h * w].to_vec(),
                )
                .ok_or_else(|| Error::format(src, "an image of the wrong size"))?;
                let path = dir.join(format!("{j:04}.png"));
                img.save(&path).map_err(|e| Error::format(&path, e.to_string()))?;
            }
            images[split_index(split)] += rows.len();
        }
    }
    finish(out, &classes, images)
}

/// Draws the shapes-shift set into `out`.
pub fn make_shapes_shift(out: &Path, o: &FolderOptions) -> Result<MadeFolder> {
    prepare(out, o.force)?;
    let mut classes = Vec::new();
    for colour in COLORS {
        for shape in SHAPES {
            classes.push(format!("{colour}_{shape}"));
        }
    }
    let mut images = [0; 3];
    for (split, n) in [("train", o.train), ("val", o.val), ("test", o.test)] {
        for (c, name) in classes.iter().enumerate() {
            let dir = out.join(split).join(name);
            std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
            for j in 0..n {
                let mut rng = Rng::keyed(o.seed, &format!("{split}/{name}/{j}"));
                let img = draw_shape(COLORS[c / SHAPES.len()], SHAPES[c % SHAPES.len()], &mut rng);
                let path = dir.join(format!("{j:04}.png"));
                img.save(&path).map_err(|e| Error::format(&path, e.to_string()))?;
            }
            images[split_index(split)] += n;
        }
    }
    finish(out, &classes, images)
}

fn split_index(split: &str) -> usize {
    match split {
        "train" => 0,
        "val" => 1,
        _ => 2,
    }
}

fn prepare(out: &Path, force: bool) -> Result<()> {
    if out.is_dir()
        && !force
        && std::fs::read_dir(out).map_err(|e| Error::io(out, e))?.next().is_some()
    {
        return Err(Error::config(
            "--out",
            format!("{} is not empty (use --force)", out.display()),
        ));
    }
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))
}

fn finish(out: &Path, classes: &[String], images: [usize; 3]) -> Result<MadeFolder> {
    let list = classes.join("\n") + "\n";
    braid_core::fsx::write_file(&out.join("classes.txt"), list.as_bytes())?;
    Ok(MadeFolder { dir: out.to_path_buf(), classes: classes.len(), images })
}

/// The RGB of each easy-VQA colour name, and the side of the images.
fn rgb(colour: &str) -> [f32; 3] {
    match colour {
        "red" => [220.0, 30.0, 30.0],
        "green" => [30.0, 170.0, 40.0],
        "blue" => [30.0, 50.0, 230.0],
        "black" => [10.0, 10.0, 10.0],
        "gray" => [128.0, 128.0, 128.0],
        "teal" => [0.0, 128.0, 128.0],
        "brown" => [140.0, 80.0, 30.0],
        _ => [240.0, 210.0, 20.0],
    }
}
const SIDE: u32 = 64;

/// One rotated shape (filled, or half the time an outline) over a striped, noisy pale
/// background.
fn draw_shape(colour: &str, shape: &str, rng: &mut Rng) -> RgbImage {
    let base: [f32; 3] = std::array::from_fn(|_| 170.0 + 70.0 * rng.unit() as f32);
    let stripe: [f32; 3] = std::array::from_fn(|_| 150.0 + 90.0 * rng.unit() as f32);
    let period = 6.0 + 10.0 * rng.unit() as f32;
    let tilt = std::f32::consts::PI * rng.unit() as f32;
    let (cx, cy) = (20.0 + 24.0 * rng.unit() as f32, 20.0 + 24.0 * rng.unit() as f32);
    let size = 9.0 + 8.0 * rng.unit() as f32;
    let angle = 2.0 * std::f32::consts::PI * rng.unit() as f32;
    let thick = 2.0 + 2.0 * rng.unit() as f32;
    let outline = rng.unit() < 0.5;
    let ink = rgb(colour).map(|v| (v + 30.0 * (rng.unit() as f32 - 0.5)).clamp(0.0, 255.0));
    let (sa, ca) = angle.sin_cos();
    let mut img = RgbImage::new(SIDE, SIDE);
    for y in 0..SIDE {
        for x in 0..SIDE {
            let (px, py) = (x as f32 + 0.5, y as f32 + 0.5);
            let s = ((px * tilt.cos() + py * tilt.sin()) / period).fract() < 0.5;
            let bg = if s { stripe } else { base };
            // Rotate into the shape's frame.
            let (dx, dy) = (px - cx, py - cy);
            let (u, v) = (ca * dx + sa * dy, -sa * dx + ca * dy);
            let d = match shape {
                "circle" => (u * u + v * v).sqrt() - size,
                "rectangle" => {
                    let (hx, hy) = (size, size * 0.65);
                    let (qx, qy) = (u.abs() - hx, v.abs() - hy);
                    let outside = (qx.max(0.0).powi(2) + qy.max(0.0).powi(2)).sqrt();
                    outside + qx.max(qy).min(0.0)
                }
                _ => triangle_distance(u, v, size),
            };
            let noise = 24.0 * (rng.unit() as f32 - 0.5);
            let on = if outline { d.abs() < thick / 2.0 } else { d < 0.0 };
            let px = if on { ink } else { bg };
            img.put_pixel(x, y, image::Rgb(px.map(|v| (v + noise).clamp(0.0, 255.0) as u8)));
        }
    }
    img
}

/// Signed distance to an equilateral triangle of circumradius `r` centred at the origin
/// (negative inside).
fn triangle_distance(u: f32, v: f32, r: f32) -> f32 {
    let k = 3f32.sqrt();
    let side = r * k;
    let (mut x, mut y) = (u.abs() - side / 2.0, v + r / 2.0);
    if x + k * y > 0.0 {
        (x, y) = ((x - k * y) / 2.0, (-k * x - y) / 2.0);
    }
    x -= x.clamp(-side, 0.0);
    -(x * x + y * y).sqrt() * y.signum()
}

/// Reads a gzipped IDX file (LeCun's MNIST format): magic `0 0 8 rank`, big-endian
/// dimensions, then unsigned bytes. -> (dimensions, data)
pub fn read_idx(path: &Path, rank: usize) -> Result<(Vec<usize>, Vec<u8>)> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut bytes = Vec::new();
    flate2::read::GzDecoder::new(file)
        .take(MAX_IDX_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::format(path, format!("not a gzipped IDX file: {e}")))?;
    if bytes.len() > MAX_IDX_BYTES {
        return Err(Error::format(path, format!("larger than {MAX_IDX_BYTES} bytes")));
    }
    let header = 4 + 4 * rank;
    if bytes.len() < header || bytes[..3] != [0, 0, 8] || usize::from(bytes[3]) != rank {
        return Err(Error::format(
            path,
            format!("not an IDX file of rank {rank} with unsigned bytes"),
        ));
    }
    let dims: Vec<usize> = (0..rank)
        .map(|i| {
            u32::from_be_bytes([
                bytes[4 + 4 * i],
                bytes[5 + 4 * i],
                bytes[6 + 4 * i],
                bytes[7 + 4 * i],
            ]) as usize
        })
        .collect();
    let n = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    if n != Some(bytes.len() - header) {
        return Err(Error::format(
            path,
            format!("dimensions {dims:?} do not match {} data bytes", bytes.len() - header),
        ));
    }
    Ok((dims, bytes[header..].to_vec()))
}
