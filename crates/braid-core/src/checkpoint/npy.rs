//! NumPy `.npy` arrays and `.npz` archives: read and write, little-endian, C order.
//!
//! Format: <https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html>.
//! Headers of versions 1.0, 2.0 and 3.0 are read; `fortran_order: True` arrays are
//! reordered to C order on reading (the shared HAPT archive is stored that way); 1.0 is written (2.0 when the header
//! would not fit). `.npz` archives are written deflate-compressed, like
//! `np.savez_compressed`, through a `.tmp` file renamed into place.

use std::io::Write;
use std::path::Path;

use candle_core::{DType, Device, Tensor};

use crate::{Error, Result};

pub use super::npz::{read_npz, write_npz};

const MAGIC: &[u8] = b"\x93NUMPY";

/// An n-dimensional array as stored in a `.npy` file.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyArray {
    /// Dimensions, C order; empty for a scalar.
    pub shape: Vec<usize>,
    /// Elements, row-major.
    pub data: NpyData,
}

/// The elements of an [`NpyArray`], by element type.
#[derive(Debug, Clone, PartialEq)]
pub enum NpyData {
    /// `<f4`
    F32(Vec<f32>),
    /// `<f8`
    F64(Vec<f64>),
    /// `|i1`
    I8(Vec<i8>),
    /// `<i4`
    I32(Vec<i32>),
    /// `<i8`
    I64(Vec<i64>),
    /// `|u1` (also read from `|b1`)
    U8(Vec<u8>),
}

impl NpyData {
    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            Self::F32(v) => v.len(),
            Self::F64(v) => v.len(),
            Self::I8(v) => v.len(),
            Self::I32(v) => v.len(),
            Self::I64(v) => v.len(),
            Self::U8(v) => v.len(),
        }
    }

    /// True when there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The NumPy type string (`<f4`, `|i1`, ...).
    pub fn descr(&self) -> &'static str {
        match self {
            Self::F32(_) => "<f4",
            Self::F64(_) => "<f8",
            Self::I8(_) => "|i1",
            Self::I32(_) => "<i4",
            Self::I64(_) => "<i8",
            Self::U8(_) => "|u1",
        }
    }

    fn to_le_bytes(&self) -> Vec<u8> {
        match self {
            Self::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Self::F64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Self::I8(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Self::I32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Self::I64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Self::U8(v) => v.clone(),
        }
    }

    fn from_le_bytes(descr: &str, bytes: &[u8]) -> std::result::Result<Self, String> {
        Ok(match descr {
            "<f4" => Self::F32(decode(bytes, f32::from_le_bytes)),
            "<f8" => Self::F64(decode(bytes, f64::from_le_bytes)),
            "|i1" | "<i1" | "i1" => Self::I8(decode(bytes, i8::from_le_bytes)),
            "<i4" => Self::I32(decode(bytes, i32::from_le_bytes)),
            "<i8" => Self::I64(decode(bytes, i64::from_le_bytes)),
            "|u1" | "<u1" | "u1" | "|b1" => Self::U8(bytes.to_vec()),
            other => {
                return Err(format!(
                    "unsupported dtype `{other}` (supported: <f4 <f8 |i1 <i4 <i8 |u1 |b1)"
                ))
            }
        })
    }
}

impl NpyData {
    /// Reorders column-major (`fortran_order: True`) elements into row-major order.
    fn fortran_to_c(&self, shape: &[usize]) -> Self {
        match self {
            Self::F32(v) => Self::F32(fortran_to_c(v, shape)),
            Self::F64(v) => Self::F64(fortran_to_c(v, shape)),
            Self::I8(v) => Self::I8(fortran_to_c(v, shape)),
            Self::I32(v) => Self::I32(fortran_to_c(v, shape)),
            Self::I64(v) => Self::I64(fortran_to_c(v, shape)),
            Self::U8(v) => Self::U8(fortran_to_c(v, shape)),
        }
    }
}

/// Row-major copy of column-major `v`: walks the output in C order, tracking the
/// column-major offset of the current multi-index.
fn fortran_to_c<T: Copy>(v: &[T], shape: &[usize]) -> Vec<T> {
    let mut fstride = vec![1usize; shape.len()];
    for k in 1..shape.len() {
        fstride[k] = fstride[k - 1] * shape[k - 1];
    }
    let mut idx = vec![0usize; shape.len()];
    let mut offset = 0usize;
    let mut out = Vec::with_capacity(v.len());
    for _ in 0..v.len() {
        out.push(v[offset]);
        for k in (0..shape.len()).rev() {
            idx[k] += 1;
            offset += fstride[k];
            if idx[k] < shape[k] {
                break;
            }
            offset -= fstride[k] * shape[k];
            idx[k] = 0;
        }
    }
    out
}

fn decode<const N: usize, T>(bytes: &[u8], f: fn([u8; N]) -> T) -> Vec<T> {
    bytes
        .chunks_exact(N)
        .map(|c| {
            let mut a = [0u8; N];
            a.copy_from_slice(c);
            f(a)
        })
        .collect()
}

fn elem_size(descr: &str) -> usize {
    match descr.as_bytes().last() {
        Some(b'8') => 8,
        Some(b'4') => 4,
        Some(b'2') => 2,
        _ => 1,
    }
}

impl NpyArray {
    /// Number of elements the shape promises.
    pub fn elem_count(&self) -> usize {
        self.shape.iter().product()
    }

    /// A tensor with the same shape and values. `i8` has no candle dtype and becomes `i64`.
    pub fn to_tensor(&self, device: &Device) -> Result<Tensor> {
        let s = self.shape.as_slice();
        let t = match &self.data {
            NpyData::F32(v) => Tensor::from_slice(v, s, device)?,
            NpyData::F64(v) => Tensor::from_slice(v, s, device)?,
            NpyData::I8(v) => {
                let v: Vec<i64> = v.iter().map(|&x| i64::from(x)).collect();
                Tensor::from_vec(v, s, device)?
            }
            NpyData::I32(v) => Tensor::from_slice(v, s, device)?,
            NpyData::I64(v) => Tensor::from_slice(v, s, device)?,
            NpyData::U8(v) => Tensor::from_slice(v, s, device)?,
        };
        Ok(t)
    }

    /// The array of a tensor. `f16`/`bf16` become `f32`, `u32`/`i16` become `i64`.
    pub fn from_tensor(t: &Tensor) -> Result<Self> {
        let flat = t.flatten_all()?;
        let data = match t.dtype() {
            DType::F64 => NpyData::F64(flat.to_vec1()?),
            DType::I32 => NpyData::I32(flat.to_vec1()?),
            DType::I64 => NpyData::I64(flat.to_vec1()?),
            DType::U8 => NpyData::U8(flat.to_vec1()?),
            DType::U32 | DType::I16 => NpyData::I64(flat.to_dtype(DType::I64)?.to_vec1()?),
            _ => NpyData::F32(flat.to_dtype(DType::F32)?.to_vec1()?),
        };
        Ok(Self { shape: t.dims().to_vec(), data })
    }
}

/// What a `.npy` header says: the element type, order and shape, where the data starts
/// and how many bytes of it the shape needs.
pub(super) struct Header {
    descr: String,
    fortran: bool,
    pub(super) shape: Vec<usize>,
    /// Offset of the first data byte (the header's total length).
    pub(super) data_start: usize,
    /// Bytes of data the shape and element type need.
    pub(super) data_len: usize,
}

/// Bytes enough to hold the magic, version and header-length field of any version.
pub(super) const PREFIX_LEN: usize = 12;

/// Where the header of `.npy` bytes starting with `prefix` (at least [`PREFIX_LEN`] bytes,
/// or the whole file if shorter) ends.
pub(super) fn header_end(prefix: &[u8]) -> std::result::Result<usize, String> {
    if prefix.len() < 10 || &prefix[..6] != MAGIC {
        return Err("not a .npy file (bad magic)".into());
    }
    let (len_bytes, start): (usize, usize) = match prefix[6] {
        1 => (2, 10),
        2 | 3 => (4, 12),
        v => return Err(format!("unsupported .npy version {v}.{}", prefix[7])),
    };
    let len_field = prefix.get(8..8 + len_bytes).ok_or("truncated header")?;
    let hlen = len_field.iter().rev().fold(0usize, |a, &b| (a << 8) | usize::from(b));
    start.checked_add(hlen).ok_or_else(|| "truncated header".into())
}

/// Parses the header at the start of `bytes` (which must hold all of it); nothing is
/// sized from the shape here, it is only multiplied out with overflow checks.
pub(super) fn parse_npy_header(bytes: &[u8]) -> std::result::Result<Header, String> {
    let end = header_end(bytes)?;
    let start = if bytes[6] == 1 { 10 } else { 12 };
    let raw = bytes.get(start..end).ok_or("truncated header")?;
    let header = std::str::from_utf8(raw).map_err(|_| "header is not text")?;
    let (descr, fortran, shape) = parse_header(header)?;
    let count = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).ok_or("shape overflows")?;
    let data_len = count.checked_mul(elem_size(&descr)).ok_or("shape overflows")?;
    Ok(Header { descr, fortran, shape, data_start: end, data_len })
}

impl Header {
    /// The array from its data bytes (at least [`Header::data_len`] of them).
    pub(super) fn decode(self, body: &[u8]) -> std::result::Result<NpyArray, String> {
        let Some(body) = body.get(..self.data_len) else {
            return Err(format!(
                "truncated: shape {:?} needs {} bytes of data, found {}",
                self.shape,
                self.data_len,
                body.len()
            ));
        };
        let data = NpyData::from_le_bytes(&self.descr, body)?;
        let shape = self.shape;
        let data = if self.fortran && shape.len() > 1 { data.fortran_to_c(&shape) } else { data };
        Ok(NpyArray { shape, data })
    }
}

/// Parses `.npy` bytes; the error is a message without the file name.
pub(super) fn parse_npy(bytes: &[u8]) -> std::result::Result<NpyArray, String> {
    let h = parse_npy_header(bytes)?;
    let body = &bytes[h.data_start..];
    h.decode(body)
}

/// The header as shown in an error: one line, escaped, at most 120 characters.
fn shown(h: &str) -> String {
    let h = h.trim();
    let mut s: String = h.chars().take(120).flat_map(char::escape_debug).collect();
    if h.chars().nth(120).is_some() {
        s.push_str("...");
    }
    s
}

/// Reads `descr`, `fortran_order` and `shape` from the Python dict literal of a header.
/// Everything is matched by characters (never sliced at a computed byte offset), so any
/// text, however malformed, gives an error naming the header rather than a panic.
fn parse_header(h: &str) -> std::result::Result<(String, bool, Vec<usize>), String> {
    let bad = |what: &str| format!("bad {what} in header `{}`", shown(h));
    let value = |key: &str| -> std::result::Result<&str, String> {
        let (_, rest) = h
            .split_once(&format!("'{key}'"))
            .or_else(|| h.split_once(&format!("\"{key}\"")))
            .ok_or_else(|| format!("header has no `{key}`: `{}`", shown(h)))?;
        let (_, v) = rest.split_once(':').ok_or_else(|| bad(key))?;
        Ok(v.trim_start())
    };
    let d = value("descr")?;
    let mut quoted = d.chars();
    let quote = quoted.next().filter(|c| matches!(c, '\'' | '"')).ok_or_else(|| bad("descr"))?;
    let descr = quoted.as_str().split(quote).next().ok_or_else(|| bad("descr"))?.to_string();
    let fortran = value("fortran_order")?.starts_with("True");
    let (inner, _) = value("shape")?
        .strip_prefix('(')
        .and_then(|s| s.split_once(')'))
        .ok_or_else(|| bad("shape"))?;
    let shape = inner
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.trim_end_matches('L')
                .parse::<usize>()
                .map_err(|_| format!("bad dimension `{}` in header `{}`", shown(p), shown(h)))
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok((descr, fortran, shape))
}

/// The bytes of a `.npy` file holding `a`.
pub(super) fn encode_npy(a: &NpyArray) -> std::result::Result<Vec<u8>, String> {
    if a.elem_count() != a.data.len() {
        return Err(format!(
            "shape {:?} holds {} elements but data has {}",
            a.shape,
            a.elem_count(),
            a.data.len()
        ));
    }
    let dims: Vec<String> = a.shape.iter().map(|d| d.to_string()).collect();
    let shape = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut header =
        format!("{{'descr': '{}', 'fortran_order': False, 'shape': {shape}, }}", a.data.descr());
    let v1 = header.len() + 11 <= usize::from(u16::MAX);
    let prefix = if v1 { 10 } else { 12 };
    // Data starts on a 64-byte boundary, as numpy writes it; the header ends with '\n'.
    let pad = (64 - (prefix + header.len() + 1) % 64) % 64;
    header.push_str(&" ".repeat(pad));
    header.push('\n');
    let mut out = MAGIC.to_vec();
    if v1 {
        out.extend_from_slice(&[1, 0]);
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    } else {
        out.extend_from_slice(&[2, 0]);
        out.extend_from_slice(&(header.len() as u32).to_le_bytes());
    }
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(&a.data.to_le_bytes());
    Ok(out)
}

/// Reads a `.npy` file.
pub fn read_npy(path: impl AsRef<Path>) -> Result<NpyArray> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    parse_npy(&bytes).map_err(|m| Error::format(path, m))
}

/// The bytes of a `.npy` file holding `array`: for writers of many small files, which
/// [`write_npy`]'s sync per file would slow down (12,766 HAPT windows: 33 s against 2 s).
pub fn npy_bytes(array: &NpyArray) -> Result<Vec<u8>> {
    encode_npy(array).map_err(Error::Invalid)
}

/// Writes a `.npy` file (through `path.tmp`, renamed into place).
pub fn write_npy(path: impl AsRef<Path>, array: &NpyArray) -> Result<()> {
    let path = path.as_ref();
    let bytes = encode_npy(array).map_err(|m| Error::format(path, m))?;
    atomic_write(path, |f| f.write_all(&bytes))
}

/// Writes through `path.tmp` (created exclusively, see [`crate::fsx::write_file_with`])
/// and renames it to `path` once complete.
pub(crate) fn atomic_write(
    path: &Path,
    write: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
) -> Result<()> {
    crate::fsx::write_file_with(path, write)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<(String, NpyArray)> {
        vec![
            (
                "x".into(),
                NpyArray { shape: vec![2, 3], data: NpyData::F32(vec![0., 1., 2., 3., 4., -5.5]) },
            ),
            ("y".into(), NpyArray { shape: vec![3], data: NpyData::I8(vec![-1, 0, 12]) }),
            ("z".into(), NpyArray { shape: vec![], data: NpyData::F64(vec![2.5]) }),
            ("w".into(), NpyArray { shape: vec![2, 0], data: NpyData::I64(vec![]) }),
            ("u".into(), NpyArray { shape: vec![1, 2], data: NpyData::U8(vec![7, 255]) }),
            ("v".into(), NpyArray { shape: vec![2], data: NpyData::I32(vec![-7, 1 << 20]) }),
        ]
    }

    #[test]
    fn npy_and_npz_round_trip() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        for (name, a) in sample() {
            let p = dir.path().join(format!("{name}.npy"));
            write_npy(&p, &a)?;
            assert_eq!(read_npy(&p)?, a);
            assert_eq!(parse_npy(&npy_bytes(&a)?).map_err(Error::Invalid)?, a);
        }
        let p = dir.path().join("all.npz");
        write_npz(&p, &sample())?;
        assert!(!dir.path().join("all.npz.tmp").exists());
        assert_eq!(read_npz(&p)?, sample());
        Ok(())
    }

    #[test]
    fn header_is_what_numpy_writes() {
        let a = NpyArray { shape: vec![3], data: NpyData::F32(vec![1., 2., 3.]) };
        let b = encode_npy(&a).unwrap_or_default();
        assert_eq!(&b[..8], b"\x93NUMPY\x01\x00");
        let h = String::from_utf8_lossy(&b[10..128]);
        assert!(h.starts_with("{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }"), "{h}");
        assert_eq!(b.len(), 128 + 12);
        assert_eq!(b[127], b'\n');
    }

    #[test]
    fn bad_input_is_a_one_line_error() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let a = NpyArray { shape: vec![4], data: NpyData::F64(vec![1., 2., 3., 4.]) };
        let good = encode_npy(&a).map_err(Error::Invalid)?;
        let cases: [(&str, Vec<u8>, &str); 3] = [
            ("trunc.npy", good[..good.len() - 3].to_vec(), "truncated"),
            ("magic.npy", b"PK\x03\x04garbage".to_vec(), "bad magic"),
            ("short.npy", good[..20].to_vec(), "truncated header"),
        ];
        for (name, bytes, want) in cases {
            let p = dir.path().join(name);
            std::fs::write(&p, bytes).map_err(|e| Error::io(&p, e))?;
            let msg = read_npy(&p).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(msg.contains(name) && msg.contains(want) && !msg.contains('\n'), "{msg}");
        }
        let p = dir.path().join("bad.npz");
        std::fs::write(&p, b"not a zip").map_err(|e| Error::io(&p, e))?;
        let msg = read_npz(&p).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.contains("bad.npz") && !msg.contains('\n'), "{msg}");
        Ok(())
    }

    /// The header of a one-element `<f4` array with `shape` as its shape text.
    fn with_shape(shape: &str) -> Vec<u8> {
        let h = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}\n");
        let mut b = MAGIC.to_vec();
        b.extend_from_slice(&[1, 0]);
        b.extend_from_slice(&(h.len() as u16).to_le_bytes());
        b.extend_from_slice(h.as_bytes());
        b.extend_from_slice(&1f32.to_le_bytes());
        b
    }

    /// `b` with the first `from` replaced by `to` (same length).
    fn swap(mut b: Vec<u8>, from: &[u8], to: &[u8]) -> Vec<u8> {
        if let Some(at) = b.windows(from.len()).position(|w| w == from) {
            b[at..at + to.len()].copy_from_slice(to);
        }
        b
    }

    #[test]
    fn panic_npy_header_shape_starting_with_paren() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let cases = [
            ("paren.npy", with_shape(")"), "bad shape"),
            ("close_first.npy", with_shape(")1,("), "bad shape"),
            ("multibyte.npy", with_shape("\u{e9}(1,)"), "bad shape"),
            ("multibyte_dim.npy", with_shape("(1\u{e9},)"), "bad dimension `1\u{e9}`"),
            ("odd_descr.npy", swap(with_shape("(1,)"), b"<f4", b"?f4"), "unsupported dtype"),
            ("no_shape.npy", swap(with_shape("(1,)"), b"shape", b"Shape"), "no `shape`"),
        ];
        for (name, bytes, want) in cases {
            let p = dir.path().join(name);
            std::fs::write(&p, bytes).map_err(|e| Error::io(&p, e))?;
            let msg = read_npy(&p).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(msg.contains(name) && msg.contains(want) && !msg.contains('\n'), "{msg}");
        }
        // A multi-byte character right where the descr quote should be.
        let mut b = with_shape("(1,)");
        let at = b.windows(5).position(|w| w == b"'<f4'").unwrap_or(0);
        b.splice(at..at + 1, "\u{e9}".bytes());
        b[8] += 1;
        assert!(parse_npy(&b).err().unwrap_or_default().contains("bad descr in header"));
        // Version 2 header whose length field itself is cut short.
        assert!(parse_npy(b"\x93NUMPY\x02\x00\x10\x00")
            .err()
            .unwrap_or_default()
            .contains("truncated header"));
        assert_eq!(parse_npy(&with_shape("(1,)")).map(|a| a.shape), Ok(vec![1]));
        Ok(())
    }

    #[test]
    fn fortran_order_is_reordered() -> Result<()> {
        // np.asfortranarray(np.arange(6, dtype='<f4').reshape(2, 3)) stores 0 3 1 4 2 5.
        let a = NpyArray { shape: vec![2, 3], data: NpyData::F32(vec![0., 3., 1., 4., 2., 5.]) };
        let mut bytes = encode_npy(&a).map_err(Error::Invalid)?;
        let at = bytes.windows(5).position(|w| w == b"False").unwrap_or(0);
        bytes[at..at + 5].copy_from_slice(b"True ");
        let c = parse_npy(&bytes).map_err(Error::Invalid)?;
        assert_eq!(c.data, NpyData::F32(vec![0., 1., 2., 3., 4., 5.]));
        let v: Vec<i32> = (0..24).collect();
        let f = fortran_to_c(&v, &[2, 3, 4]);
        // C element [i, j, k] = column-major element i + 2 j + 6 k.
        assert_eq!(f[12 + 4 + 3], 1 + 2 + 6 * 3); // [1, 1, 3]
        Ok(())
    }

    #[test]
    fn tensors_round_trip() -> Result<()> {
        let t = Tensor::arange(0f32, 6., &Device::Cpu)?.reshape((2, 3))?;
        let a = NpyArray::from_tensor(&t)?;
        assert_eq!(a.shape, vec![2, 3]);
        let back = a.to_tensor(&Device::Cpu)?;
        assert_eq!(back.to_vec2::<f32>()?, t.to_vec2::<f32>()?);
        let l =
            NpyArray { shape: vec![2], data: NpyData::I8(vec![-1, 3]) }.to_tensor(&Device::Cpu)?;
        assert_eq!(l.to_vec1::<i64>()?, vec![-1, 3]);
        Ok(())
    }
}
