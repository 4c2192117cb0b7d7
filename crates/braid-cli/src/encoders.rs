//! Opening the encoders and inputs that the embedding commands share (`braid embed`,
//! `braid classify`, `braid adapt`): a model named or given by path, a Hugging Face CLIP
//! folder with its preprocessor, a list of images, and the progress bar of long runs.

use std::path::{Path, PathBuf};

use anyhow::bail;
use braid_data::image::{load_rgb, ImageProcessor};
use braid_encoders::image::Clip;
use candle_core::{Device, Tensor};
use indicatif::{ProgressBar, ProgressStyle};

/// A registered name or a path -> the model folder.
pub(crate) fn model_dir(name: &str) -> anyhow::Result<PathBuf> {
    let p = braid_hub::resolve_model(name)?;
    Ok(if p.is_file() { p.parent().map(Path::to_path_buf).unwrap_or(p) } else { p })
}

pub(crate) fn progress(n: usize, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(n as u64);
    let style = format!("{{bar:40}} {{pos}}/{{len}} {what} {{per_sec}} eta {{eta}}");
    if let Ok(s) = ProgressStyle::with_template(&style) {
        bar.set_style(s);
    }
    bar
}

/// Reads and preprocesses images; a bad one is an error naming it, or with `skip_bad` a
/// warning. -> pixels [n_ok, 3, H, W] and the paths kept
pub(crate) fn load_images(
    paths: &[PathBuf],
    proc: &ImageProcessor,
    skip_bad: bool,
    dev: &Device,
) -> anyhow::Result<(Option<Tensor>, Vec<PathBuf>)> {
    let (mut pixels, mut kept) = (Vec::new(), Vec::new());
    for p in paths {
        let pre = |img| {
            proc.preprocess(&img, dev).map_err(|e| braid_core::Error::format(p, e.to_string()))
        };
        match load_rgb(p).and_then(pre) {
            Ok(t) => {
                pixels.push(t);
                kept.push(p.clone());
            }
            // Errors from braid-data name the file already.
            Err(e) if skip_bad => eprintln!("warning: skipping {e}"),
            Err(e) => bail!("{e} (use --skip-bad to go on without it)"),
        }
    }
    let stacked = if pixels.is_empty() { None } else { Some(Tensor::stack(&pixels, 0)?) };
    Ok((stacked, kept))
}

/// A Hugging Face CLIP folder (a registered name or a path) and its image preprocessor.
pub(crate) fn load_clip(model: &str, dev: &Device) -> anyhow::Result<(Clip, ImageProcessor)> {
    let dir = model_dir(model)?;
    let (clip, report) = Clip::load(&dir, dev)?;
    eprintln!("loaded {}: {report}", dir.display());
    let proc = ImageProcessor::from_json_file(&dir.join("preprocessor_config.json"))?;
    Ok((clip, proc))
}
