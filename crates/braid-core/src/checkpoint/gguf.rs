//! GGUF files (llama.cpp): typed metadata access, tensor infos, tensors dequantized to
//! f32 (for paths gradients must pass) or kept quantized (frozen inference).
//!
//! Parsing is candle's `gguf_file` reader; this wrapper names the file in every error,
//! keeps each message to one line and turns a reader panic on corrupt input into an error.

use std::collections::HashMap;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::{Content, TensorInfo, Value};
use candle_core::quantized::QTensor;
use candle_core::{Device, Tensor};

use super::{candle_msg, Source};
use crate::{Error, Result};

/// An open GGUF file: metadata and tensor infos in memory, tensor data read on demand.
pub struct Gguf {
    path: PathBuf,
    content: Content,
}

impl std::fmt::Debug for Gguf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (m, t) = (self.content.metadata.len(), self.content.tensor_infos.len());
        write!(f, "Gguf({}, {m} metadata keys, {t} tensors)", self.path.display())
    }
}

/// Runs a reader step, turning its error or panic into a one-line error naming `path`.
fn guarded<T>(path: &Path, what: &str, f: impl FnOnce() -> candle_core::Result<T>) -> Result<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => {
            let msg = candle_msg(e)
                .replace("failed to fill whole buffer", "truncated (unexpected end of file)");
            Err(Error::format(path, format!("{what}{msg}")))
        }
        Err(_) => Err(Error::format(path, format!("{what}corrupt GGUF (the reader gave up)"))),
    }
}

/// The tensor's data must lie inside the file: a header-only or truncated GGUF is an
/// error when it is opened, not a short read (or a success) later.
fn check_extent(
    name: &str,
    info: &TensorInfo,
    data_offset: u64,
    file: u64,
) -> std::result::Result<(), String> {
    let dims = info.shape.dims();
    let dt = info.ggml_dtype;
    let elems = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    let Some(elems) = elems else {
        return Err(format!("tensor `{name}`: shape {dims:?} overflows"));
    };
    if elems % dt.block_size() != 0 {
        return Err(format!(
            "tensor `{name}`: {elems} elements of {dt:?} are not whole blocks of {}",
            dt.block_size()
        ));
    }
    let Some(bytes) = ((elems / dt.block_size()) as u64).checked_mul(dt.type_size() as u64) else {
        return Err(format!("tensor `{name}`: {dt:?} {dims:?} overflows a byte count"));
    };
    let start = data_offset.checked_add(info.offset);
    match start.and_then(|s| s.checked_add(bytes)) {
        Some(end) if end <= file => Ok(()),
        _ => Err(format!(
            "tensor `{name}` ({dt:?} {dims:?}) needs {bytes} bytes at offset {}, past the end of the {file}-byte file (truncated or header-only GGUF)",
            data_offset.saturating_add(info.offset)
        )),
    }
}

fn reader(path: &Path) -> Result<BufReader<std::fs::File>> {
    Ok(BufReader::new(std::fs::File::open(path).map_err(|e| Error::io(path, e))?))
}

impl Gguf {
    /// Reads the header, metadata and tensor infos of a GGUF file.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let mut r = reader(&path)?;
        if let Some(msg) = super::gguf_header::precheck(&path) {
            return Err(Error::format(&path, msg));
        }
        let content = guarded(&path, "not a readable GGUF file: ", || Content::read(&mut r))?;
        let size = std::fs::metadata(&path).map_err(|e| Error::io(&path, e))?.len();
        let mut names: Vec<&String> = content.tensor_infos.keys().collect();
        names.sort();
        for name in names {
            if let Some(info) = content.tensor_infos.get(name) {
                check_extent(name, info, content.tensor_data_offset, size)
                    .map_err(|m| Error::format(&path, m))?;
            }
        }
        Ok(Self { path, content })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// All metadata, by key.
    pub fn metadata(&self) -> &HashMap<String, Value> {
        &self.content.metadata
    }

    /// One metadata value, if present.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.content.metadata.get(key)
    }

    fn require(&self, key: &str) -> Result<&Value> {
        self.get(key)
            .ok_or_else(|| Error::format(&self.path, format!("metadata key `{key}` is missing")))
    }

    fn wrong_type(&self, key: &str, v: &Value, want: &str) -> Error {
        Error::format(
            &self.path,
            format!("metadata key `{key}` is {:?}, expected {want}", v.value_type()),
        )
    }

    /// A string value (`general.architecture`, `tokenizer.chat_template`).
    pub fn get_str(&self, key: &str) -> Result<&str> {
        match self.require(key)? {
            Value::String(s) => Ok(s),
            v => Err(self.wrong_type(key, v, "a string")),
        }
    }

    /// A non-negative integer value of any integer type (`llama.block_count`).
    pub fn get_u64(&self, key: &str) -> Result<u64> {
        let v = self.require(key)?;
        let n = match *v {
            Value::U8(x) => Some(u64::from(x)),
            Value::U16(x) => Some(u64::from(x)),
            Value::U32(x) => Some(u64::from(x)),
            Value::U64(x) => Some(x),
            Value::I8(x) => u64::try_from(x).ok(),
            Value::I16(x) => u64::try_from(x).ok(),
            Value::I32(x) => u64::try_from(x).ok(),
            Value::I64(x) => u64::try_from(x).ok(),
            _ => None,
        };
        n.ok_or_else(|| self.wrong_type(key, v, "a non-negative integer"))
    }

    /// A non-negative integer value that fits `u32`.
    pub fn get_u32(&self, key: &str) -> Result<u32> {
        let n = self.get_u64(key)?;
        u32::try_from(n).map_err(|_| {
            Error::format(&self.path, format!("metadata key `{key}` = {n} exceeds u32"))
        })
    }

    /// A non-negative integer value as `usize`.
    pub fn get_usize(&self, key: &str) -> Result<usize> {
        let n = self.get_u64(key)?;
        usize::try_from(n).map_err(|_| {
            Error::format(&self.path, format!("metadata key `{key}` = {n} exceeds usize"))
        })
    }

    /// A float value (`llama.rope.freq_base`); f64 and integers are converted.
    pub fn get_f32(&self, key: &str) -> Result<f32> {
        match *self.require(key)? {
            Value::F32(x) => Ok(x),
            Value::F64(x) => Ok(x as f32),
            _ => self.get_u64(key).map(|n| n as f32),
        }
    }

    /// An array of strings (`tokenizer.ggml.tokens`, `tokenizer.ggml.merges`).
    pub fn get_str_array(&self, key: &str) -> Result<Vec<&str>> {
        let v = self.require(key)?;
        let Value::Array(items) = v else {
            return Err(self.wrong_type(key, v, "an array of strings"));
        };
        items
            .iter()
            .map(|x| match x {
                Value::String(s) => Ok(s.as_str()),
                other => Err(self.wrong_type(key, other, "an array of strings")),
            })
            .collect()
    }

    /// Tensor names, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.content.tensor_infos.keys().cloned().collect();
        names.sort();
        names
    }

    /// Type, shape (candle order: `[out, in]`) and offset of a tensor.
    pub fn tensor_info(&self, name: &str) -> Option<&TensorInfo> {
        self.content.tensor_infos.get(name)
    }

    /// A tensor kept in its stored (possibly quantized) type, for frozen inference.
    pub fn qtensor(&self, name: &str, device: &Device) -> Result<QTensor> {
        let Some(info) = self.tensor_info(name) else {
            return Err(Error::format(&self.path, format!("no tensor `{name}`")));
        };
        // candle views an empty read as a typed slice at a dangling, unaligned pointer (an
        // abort in debug builds, undefined behaviour in release), so it never gets one.
        if info.shape.elem_count() == 0 {
            let msg = format!("tensor `{name}`: shape {:?} holds no elements", info.shape.dims());
            return Err(Error::format(&self.path, msg));
        }
        let mut r = reader(&self.path)?;
        guarded(&self.path, &format!("{name}: "), || self.content.tensor(&mut r, name, device))
    }

    /// A tensor dequantized to f32, for paths where gradients must pass.
    pub fn tensor_f32(&self, name: &str, device: &Device) -> Result<Tensor> {
        let q = self.qtensor(name, device)?;
        guarded(&self.path, &format!("{name}: "), || q.dequantize(device))
    }
}

impl Source for Gguf {
    fn names(&self) -> Vec<String> {
        Gguf::names(self)
    }

    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.tensor_info(name).map(|i| i.shape.dims().to_vec())
    }

    fn load(&self, name: &str, device: &Device) -> Result<Tensor> {
        self.tensor_f32(name, device)
    }

    fn load_quantized(&self, name: &str, device: &Device) -> Result<QTensor> {
        self.qtensor(name, device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::{gguf_file, GgmlDType};

    fn write(path: &Path, meta: &[(&str, &Value)]) -> candle_core::Result<()> {
        let w = QTensor::quantize(
            &Tensor::zeros((2, 32), candle_core::DType::F32, &Device::Cpu)?,
            GgmlDType::F32,
        )?;
        let mut f = std::fs::File::create(path)?;
        gguf_file::write(&mut f, meta, &[("token_embd.weight", &w)])
    }

    #[test]
    fn gguf_tensor_extents_past_the_file() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let p = dir.path().join("whole.gguf");
        write(&p, &[])?;
        let bytes = std::fs::read(&p).map_err(|e| Error::io(&p, e))?;
        let data_offset = Gguf::open(&p)?.content.tensor_data_offset as usize;
        // token_embd.weight: 2 x 32 f32 = 256 bytes after the header.
        for (name, len) in [("header_only.gguf", data_offset), ("truncated.gguf", bytes.len() - 1)]
        {
            let q = dir.path().join(name);
            std::fs::write(&q, &bytes[..len]).map_err(|e| Error::io(&q, e))?;
            let msg = Gguf::open(&q).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(
                msg.contains(name)
                    && msg.contains("tensor `token_embd.weight`")
                    && msg.contains("needs 256 bytes")
                    && !msg.contains('\n'),
                "{msg}"
            );
        }
        Ok(())
    }

    #[test]
    fn panic_gguf_alignment_zero() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let tokens = Value::Array(vec![Value::String("a".into()), Value::String("b".into())]);
        let arch = Value::String("llama".into());
        for (name, align, ok) in [
            ("zero.gguf", Value::U32(0), false),
            ("three.gguf", Value::U8(3), false),
            // candle's writer pads to 32 whatever the key says (64 would put the data past the end).
            ("thirty2.gguf", Value::U32(32), true),
        ] {
            let p = dir.path().join(name);
            // The alignment key after an array of strings and a string, as real files have them.
            write(
                &p,
                &[
                    ("tokenizer.ggml.tokens", &tokens),
                    ("general.architecture", &arch),
                    ("general.alignment", &align),
                ],
            )?;
            let got = Gguf::open(&p);
            assert_eq!(got.is_ok(), ok, "{name}");
            if let Err(e) = got {
                let msg = e.to_string();
                assert!(
                    msg.contains(name)
                        && msg.contains("`general.alignment`")
                        && !msg.contains("gave up"),
                    "{msg}"
                );
            }
        }
        Ok(())
    }

    #[test]
    fn panic_gguf_tensor_bytes_overflow() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let p = dir.path().join("big.gguf");
        write(&p, &[])?;
        let mut bytes = std::fs::read(&p).map_err(|e| Error::io(&p, e))?;
        let name = b"token_embd.weight";
        let at = bytes.windows(name.len()).position(|w| w == name).unwrap_or(0) + name.len();
        // [32, 2] -> [2^62, 2]: 2^63 f32 elements fit usize, their bytes do not fit u64.
        bytes[at + 4..at + 12].copy_from_slice(&(1u64 << 62).to_le_bytes());
        std::fs::write(&p, &bytes).map_err(|e| Error::io(&p, e))?;
        let msg = Gguf::open(&p).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.contains("big.gguf") && msg.contains("overflows"), "{msg}");
        Ok(())
    }

    #[test]
    fn panic_gguf_tensor_with_a_zero_dimension() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let p = dir.path().join("empty.gguf");
        write(&p, &[])?;
        let mut bytes = std::fs::read(&p).map_err(|e| Error::io(&p, e))?;
        let name = b"token_embd.weight";
        let at = bytes.windows(name.len()).position(|w| w == name).unwrap_or(0) + name.len();
        // n_dims (u32), then the first dimension (u64): 32 -> 0.
        bytes[at + 4..at + 12].copy_from_slice(&0u64.to_le_bytes());
        std::fs::write(&p, &bytes).map_err(|e| Error::io(&p, e))?;
        let g = Gguf::open(&p)?;
        let msg = g.tensor_f32("token_embd.weight", &Device::Cpu).err().map(|e| e.to_string());
        let msg = msg.unwrap_or_default();
        assert!(msg.contains("empty.gguf") && msg.contains("holds no elements"), "{msg}");
        Ok(())
    }
}
