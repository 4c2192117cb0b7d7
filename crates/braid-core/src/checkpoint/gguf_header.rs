//! A pre-pass over a GGUF file's metadata that finds the values candle's reader would
//! trust blindly, before candle sees them: `general.alignment = 0` divides by zero inside
//! candle's `Content::read`. The walk skips every other value, bounded by the file size
//! (lengths are checked against the bytes left, nesting is limited), and gives up quietly
//! on anything it cannot read: candle's reader then reports that file's real problem.
//! Format: <https://github.com/ggml-org/ggml/blob/master/docs/gguf.md>.

use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;

/// Value type codes of the GGUF spec.
const STRING: u32 = 8;
const ARRAY: u32 = 9;

/// Arrays nested deeper than this end the walk (candle reads them; none is sane).
const MAX_DEPTH: usize = 8;

struct Walk<R> {
    r: R,
    /// Bytes left from the current position.
    left: u64,
    /// Width of string and array lengths: 4 in version 1, 8 later.
    len_bytes: usize,
}

impl<R: Read + Seek> Walk<R> {
    fn bytes<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.left = self.left.checked_sub(N as u64)?;
        let mut b = [0u8; N];
        self.r.read_exact(&mut b).ok()?;
        Some(b)
    }

    fn u32(&mut self) -> Option<u32> {
        self.bytes::<4>().map(u32::from_le_bytes)
    }

    fn len(&mut self) -> Option<u64> {
        if self.len_bytes == 4 {
            self.u32().map(u64::from)
        } else {
            self.bytes::<8>().map(u64::from_le_bytes)
        }
    }

    fn skip(&mut self, n: u64) -> Option<()> {
        self.left = self.left.checked_sub(n)?;
        self.r.seek(SeekFrom::Current(i64::try_from(n).ok()?)).ok()?;
        Some(())
    }

    fn string(&mut self) -> Option<Vec<u8>> {
        let n = self.len()?;
        if n > self.left {
            return None;
        }
        self.left -= n;
        let mut b = vec![0u8; usize::try_from(n).ok()?];
        self.r.read_exact(&mut b).ok()?;
        Some(b)
    }

    /// Bytes of a fixed-size scalar of type `t`, or `None` for strings and arrays.
    fn scalar_size(t: u32) -> Option<u64> {
        match t {
            0 | 1 | 7 => Some(1),
            2 | 3 => Some(2),
            4..=6 => Some(4),
            10..=12 => Some(8),
            _ => None,
        }
    }

    /// Skips one value of type `t`; `Some(value)` for a small unsigned or signed integer
    /// (the types candle reads `general.alignment` from), `Some(None)` otherwise.
    fn value(&mut self, t: u32, depth: usize) -> Option<Option<i64>> {
        match t {
            0 => self.bytes::<1>().map(|b| Some(i64::from(b[0]))),
            1 => self.bytes::<1>().map(|b| Some(i64::from(b[0] as i8))),
            2 => self.bytes::<2>().map(|b| Some(i64::from(u16::from_le_bytes(b)))),
            3 => self.bytes::<2>().map(|b| Some(i64::from(i16::from_le_bytes(b)))),
            4 => self.bytes::<4>().map(|b| Some(i64::from(u32::from_le_bytes(b)))),
            5 => self.bytes::<4>().map(|b| Some(i64::from(i32::from_le_bytes(b)))),
            STRING => {
                let n = self.len()?;
                self.skip(n).map(|_| None)
            }
            ARRAY if depth < MAX_DEPTH => {
                let et = self.u32()?;
                let n = self.len()?;
                match Self::scalar_size(et) {
                    Some(size) => self.skip(n.checked_mul(size)?).map(|_| None),
                    None => {
                        // Each element takes at least one byte: a count past the file is corrupt.
                        if n > self.left {
                            return None;
                        }
                        for _ in 0..n {
                            self.value(et, depth + 1)?;
                        }
                        Some(None)
                    }
                }
            }
            t => Self::scalar_size(t).and_then(|n| self.skip(n)).map(|_| None),
        }
    }
}

/// A one-line problem with a metadata value that candle would fail on (or panic on),
/// or `None` when there is none or the header cannot be walked.
pub(super) fn precheck(path: &Path) -> Option<String> {
    let file = std::fs::File::open(path).ok()?;
    let size = file.metadata().ok()?.len();
    let mut w = Walk { r: BufReader::new(file), left: size, len_bytes: 8 };
    if &w.bytes::<4>()? != b"GGUF" {
        return None;
    }
    w.len_bytes = if w.u32()? == 1 { 4 } else { 8 };
    let _tensors = w.len()?;
    let kvs = w.len()?;
    for _ in 0..kvs {
        let key = w.string()?;
        let t = w.u32()?;
        let v = w.value(t, 0)?;
        if key == b"general.alignment" {
            return match v {
                Some(a) if a >= 0 && !(a as u64).is_power_of_two() => {
                    Some(format!("metadata key `general.alignment` = {a} is not a power of two (GGUF data is aligned to one, default 32)"))
                }
                _ => None,
            };
        }
    }
    None
}
