//! What decoding one video file may hold in memory: every frame is decoded before the
//! sampled ones are picked (uniform sampling needs the frame count), so the frames and
//! pixels held are counted as each frame arrives and checked against
//! [`braid_core::limits`] before the next is read.

use braid_core::limits::{Limit, PIXELS, VIDEO_PIXELS, VIDEO_SOURCE_FRAMES};

/// The running totals of one decode, against their limits.
#[derive(Debug, Clone)]
pub(crate) struct DecodeBudget {
    frames_limit: Limit,
    pixels_limit: Limit,
    frames: u64,
    pixels: u64,
}

impl Default for DecodeBudget {
    fn default() -> Self {
        Self::new(VIDEO_SOURCE_FRAMES, VIDEO_PIXELS)
    }
}

impl DecodeBudget {
    /// A budget of `frames_limit` frames and `pixels_limit` pixels in all.
    pub(crate) fn new(frames_limit: Limit, pixels_limit: Limit) -> Self {
        Self { frames_limit, pixels_limit, frames: 0, pixels: 0 }
    }

    /// Checks a `w`x`h` frame before it is read: one image within
    /// [`braid_core::limits::PIXELS`], and all frames so far within the budget.
    pub(crate) fn add(&mut self, w: u32, h: u32) -> std::result::Result<(), String> {
        let px = u64::from(w) * u64::from(h);
        PIXELS.check(px, &format!("a {w}x{h} frame"))?;
        self.frames += 1;
        self.pixels = self.pixels.saturating_add(px);
        let what = format!("holding {} decoded frames", self.frames);
        self.frames_limit.check(self.frames, &what)?;
        self.pixels_limit.check(self.pixels, &what)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alloc_video_decode_budget() {
        let mut b = DecodeBudget::new(
            Limit::new("BRAID_TEST_UNSET_FRAMES", 3, "frames"),
            Limit::new("BRAID_TEST_UNSET_PIXELS", 100, "pixels"),
        );
        assert!(b.add(5, 5).is_ok() && b.add(5, 5).is_ok());
        let e = b.add(10, 6).err().unwrap_or_default();
        assert_eq!(e, "holding 3 decoded frames needs 110 pixels, over the limit of 100 pixels (set BRAID_TEST_UNSET_PIXELS to raise it)");
        let e = b.add(1, 1).err().unwrap_or_default();
        assert!(e.contains("needs 4 frames") && e.contains("BRAID_TEST_UNSET_FRAMES"), "{e}");
        let e = DecodeBudget::default().add(65535, 65535).err().unwrap_or_default();
        assert!(e.contains("a 65535x65535 frame") && e.contains("BRAID_MAX_PIXELS"), "{e}");
    }
}
