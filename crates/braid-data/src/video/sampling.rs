//! Which frames of a video to keep.

use braid_core::{Error, Result};
use serde::{Deserialize, Serialize};

/// How T frames are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FrameSampling {
    /// `frames` frames at the centres of equal segments of the whole video (frames repeat
    /// when the video is shorter).
    Uniform {
        /// T.
        frames: usize,
    },
    /// One frame every `1 / fps` seconds from the start, at most `max_frames`.
    FixedRate {
        /// Sampling rate in frames per second.
        fps: f64,
        /// Cap on T.
        max_frames: usize,
    },
}

impl Default for FrameSampling {
    fn default() -> Self {
        Self::Uniform { frames: 8 }
    }
}

impl FrameSampling {
    /// Checks the settings before anything is sized from them: at least one frame and at
    /// most [`braid_core::limits::VIDEO_FRAMES`], a finite positive rate.
    pub fn validate(&self) -> Result<()> {
        let (field, frames) = match *self {
            Self::Uniform { frames } => ("sampling.frames", frames),
            Self::FixedRate { fps, max_frames } => {
                if !(fps.is_finite() && fps > 0.0) {
                    return Err(Error::config(
                        "sampling.fps",
                        format!("must be a finite positive rate, got {fps}"),
                    ));
                }
                ("sampling.max_frames", max_frames)
            }
        };
        if frames == 0 {
            return Err(Error::config(field, "at least one frame must be sampled"));
        }
        braid_core::limits::VIDEO_FRAMES
            .check(frames as u64, "sampling that many frames")
            .map_err(|m| Error::config(field, m))
    }

    /// Indices into `total` frames recorded at `source_fps` (needed by `FixedRate`).
    pub fn indices(&self, total: usize, source_fps: Option<f64>) -> Result<Vec<usize>> {
        self.validate()?;
        if total == 0 {
            return Err(Error::Invalid("the video has no frames".into()));
        }
        match *self {
            Self::Uniform { frames: 0 } | Self::FixedRate { max_frames: 0, .. } => {
                Err(Error::config("sampling", "at least one frame must be sampled"))
            }
            Self::Uniform { frames } => Ok((0..frames)
                .map(|i| ((2 * i + 1) * total / (2 * frames)).min(total - 1))
                .collect()),
            Self::FixedRate { fps, max_frames } => {
                let src = source_fps.filter(|f| f.is_finite() && *f > 0.0).ok_or_else(|| {
                    Error::config(
                        "sampling",
                        "fixed-rate sampling needs the source frame rate (unknown for this input)",
                    )
                })?;
                if fps <= 0.0 {
                    return Err(Error::config(
                        "sampling.fps",
                        format!("must be positive, got {fps}"),
                    ));
                }
                let step = src / fps;
                Ok((0..max_frames)
                    .map(|k| (k as f64 * step).round() as usize)
                    .take_while(|&i| i < total)
                    .collect())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_takes_segment_centres() {
        let s = FrameSampling::Uniform { frames: 4 };
        assert_eq!(s.indices(16, None).unwrap(), [2, 6, 10, 14]);
        assert_eq!(s.indices(2, None).unwrap(), [0, 0, 1, 1]);
        assert!(s.indices(0, None).is_err());
    }

    #[test]
    fn nan_video_fps_and_alloc_frames() {
        for fps in [f64::NAN, f64::INFINITY, -1.0, 0.0] {
            let s = FrameSampling::FixedRate { fps, max_frames: 4 };
            let e = s.indices(10, Some(10.0)).unwrap_err().to_string();
            assert!(e.contains("sampling.fps") && e.contains("finite positive"), "{e}");
        }
        let e = FrameSampling::Uniform { frames: 1_000_000_000 }.indices(10, None);
        let e = e.unwrap_err().to_string();
        assert!(e.contains("sampling.frames") && e.contains("BRAID_MAX_VIDEO_FRAMES"), "{e}");
        let s = FrameSampling::FixedRate { fps: 1.0, max_frames: 4 };
        assert!(s.indices(10, Some(f64::NAN)).is_err(), "a NaN source rate");
    }

    #[test]
    fn fixed_rate_steps_through_time() {
        let s = FrameSampling::FixedRate { fps: 2.0, max_frames: 10 };
        assert_eq!(s.indices(50, Some(10.0)).unwrap(), [0, 5, 10, 15, 20, 25, 30, 35, 40, 45]);
        assert_eq!(s.indices(12, Some(10.0)).unwrap(), [0, 5, 10]);
        assert!(s
            .indices(12, None)
            .unwrap_err()
            .to_string()
            .contains("needs the source frame rate"));
    }
}
