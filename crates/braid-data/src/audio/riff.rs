//! A look at a WAV file's `fmt ` chunk before symphonia reads it: a sample rate of 0
//! reaches an assert in symphonia (`TimeBase::new`), and an absurd rate or channel count
//! would size what follows. Anything that is not a RIFF/WAVE file, or whose `fmt ` chunk
//! is not among the first chunks, is left to symphonia.

use std::io::Read;
use std::path::Path;

/// Highest sample rate accepted (1 MHz; studio audio stops at 384 kHz).
pub const MAX_SAMPLE_RATE: u32 = 1_000_000;

/// Most channels symphonia's WAV reader handles (its channel mask is 32 bits wide).
pub const MAX_CHANNELS: u16 = 32;

/// Bytes of the file looked at for the `fmt ` chunk.
const LOOK: u64 = 1 << 16;

/// A one-line problem with the `fmt ` chunk of a WAV file, or `None`.
pub(super) fn precheck(path: &Path) -> Option<String> {
    let mut head = Vec::new();
    std::fs::File::open(path).ok()?.take(LOOK).read_to_end(&mut head).ok()?;
    precheck_head(&head)
}

/// [`precheck`] on the first bytes of a file (or of audio held in memory).
pub(super) fn precheck_head(bytes: &[u8]) -> Option<String> {
    let head = &bytes[..bytes.len().min(LOOK as usize)];
    if head.get(..4)? != b"RIFF" || head.get(8..12)? != b"WAVE" {
        return None;
    }
    let mut at = 12usize;
    while let Some(chunk) = head.get(at..at + 8) {
        let size = u32::from_le_bytes([chunk[4], chunk[5], chunk[6], chunk[7]]) as usize;
        if &chunk[..4] == b"fmt " {
            let fmt = head.get(at + 8..at + 16)?;
            let channels = u16::from_le_bytes([fmt[2], fmt[3]]);
            let rate = u32::from_le_bytes([fmt[4], fmt[5], fmt[6], fmt[7]]);
            return check(channels, rate);
        }
        // Chunks are padded to an even length.
        at = at.checked_add(8)?.checked_add(size)?.checked_add(size % 2)?;
    }
    None
}

fn check(channels: u16, rate: u32) -> Option<String> {
    if rate == 0 {
        return Some("the WAV header gives a sample rate of 0 Hz".into());
    }
    if rate > MAX_SAMPLE_RATE {
        return Some(format!("the WAV header gives a sample rate of {rate} Hz, above the {MAX_SAMPLE_RATE} Hz accepted"));
    }
    if channels == 0 {
        return Some("the WAV header gives 0 channels".into());
    }
    if channels > MAX_CHANNELS {
        return Some(format!(
            "{channels} channels: the WAV reader handles at most {MAX_CHANNELS} (split it, e.g. with ffmpeg's `channelsplit` or `pan` filter)"
        ));
    }
    None
}
