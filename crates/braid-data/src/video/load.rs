//! One entry point for every video source, and frames -> pixel tensors.

use std::path::{Path, PathBuf};

use braid_core::{Error, Result};
use candle_core::{Device, Tensor};
use image::RgbImage;

use super::{decode_gif, decode_with_ffmpeg, frame_paths, FrameSampling};
use crate::image::{load_rgb, ImageProcessor};

/// Sampled frames.
#[derive(Debug, Clone, PartialEq)]
pub struct Video {
    /// The kept frames, in time order.
    pub frames: Vec<RgbImage>,
    /// Their indices in the source.
    pub indices: Vec<usize>,
    /// The source frame rate, when known.
    pub fps: Option<f64>,
}

/// How to read and sample.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoOptions {
    /// Which frames to keep.
    pub sampling: FrameSampling,
    /// The `ffmpeg` binary for MP4/WebM/... (default: `ffmpeg` on the PATH).
    pub ffmpeg: PathBuf,
    /// Frame rate of frame folders (they carry none).
    pub folder_fps: Option<f64>,
}

impl Default for VideoOptions {
    fn default() -> Self {
        Self {
            sampling: FrameSampling::default(),
            ffmpeg: PathBuf::from("ffmpeg"),
            folder_fps: None,
        }
    }
}

/// A folder of frames, a `.gif`, or any file ffmpeg reads -> the sampled frames. Folder
/// frames are decoded only when sampled.
pub fn load_video(path: &Path, opts: &VideoOptions) -> Result<Video> {
    // Bad settings are refused before a frame is decoded.
    opts.sampling.validate()?;
    if path.is_dir() {
        let paths = frame_paths(path)?;
        let indices = opts.sampling.indices(paths.len(), opts.folder_fps)?;
        let frames = indices.iter().map(|&i| load_rgb(&paths[i])).collect::<Result<Vec<_>>>()?;
        return Ok(Video { frames, indices, fps: opts.folder_fps });
    }
    let is_gif =
        path.extension().and_then(|e| e.to_str()).is_some_and(|e| e.eq_ignore_ascii_case("gif"));
    let (all, fps) =
        if is_gif { decode_gif(path)? } else { decode_with_ffmpeg(path, &opts.ffmpeg)? };
    let indices =
        opts.sampling.indices(all.len(), fps).map_err(|e| Error::format(path, e.to_string()))?;
    let frames = indices.iter().map(|&i| all[i].clone()).collect();
    Ok(Video { frames, indices, fps })
}

/// Preprocessed frames: `[T, 3, H, W]`.
pub fn frames_tensor(
    frames: &[RgbImage],
    proc: &ImageProcessor,
    device: &Device,
) -> Result<Tensor> {
    let t = frames.iter().map(|f| proc.preprocess(f, device)).collect::<Result<Vec<_>>>()?;
    if t.is_empty() {
        return Err(Error::Invalid("no frames".into()));
    }
    Ok(Tensor::stack(&t, 0)?)
}

#[cfg(test)]
mod tests;
