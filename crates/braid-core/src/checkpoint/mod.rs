//! Checkpoint I/O: safetensors (memory-mapped, single or sharded), GGUF and `.npz`
//! behind one [`Checkpoint`], `.npy`/`.npz` arrays, weight-name remap tables, and a
//! tracking var builder that reports every missing, unexpected or mismatched tensor.

pub mod gguf;
mod gguf_header;
pub mod npy;
pub mod npz;
mod npz_source;
pub mod remap;
pub mod report;
pub mod safetensors;
pub mod tracker;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};

pub use gguf::Gguf;
pub use npy::{npy_bytes, read_npy, read_npz, write_npy, write_npz, NpyArray, NpyData};
pub use remap::{RemapTable, Rule, Transform};
pub use report::LoadReport;
pub use safetensors::Safetensors;
pub use tracker::LoadTracker;

use crate::{Error, Result};

/// A file that holds named tensors.
trait Source: Send + Sync {
    /// Tensor names as stored.
    fn names(&self) -> Vec<String>;
    /// Shape of a stored tensor.
    fn shape(&self, name: &str) -> Option<Vec<usize>>;
    /// A stored tensor in its own dtype (GGUF: dequantized f32).
    fn load(&self, name: &str, device: &Device) -> Result<Tensor>;
    /// A stored tensor kept quantized; formats without quantization wrap it as f32.
    fn load_quantized(&self, name: &str, device: &Device) -> Result<QTensor> {
        let t = self.load(name, device)?.to_dtype(DType::F32)?;
        Ok(QTensor::quantize(&t, GgmlDType::F32)?)
    }
}

/// The first line of a candle error, without the path candle may have attached
/// (the caller names the file itself).
pub(crate) fn candle_msg(e: candle_core::Error) -> String {
    let e = match e {
        candle_core::Error::WithBacktrace { inner, .. } => *inner,
        e => e,
    };
    let e = match e {
        candle_core::Error::WithPath { inner, .. } => *inner,
        e => e,
    };
    e.to_string().lines().next().unwrap_or("").to_string()
}

/// A stored tensor under the name modules ask for.
#[derive(Debug, Clone)]
struct Entry {
    stored: String,
    transform: Option<Transform>,
}

/// Named tensors from a safetensors, GGUF or `.npz` file, optionally renamed by a
/// [`RemapTable`]. Cloning is cheap (the file is shared).
#[derive(Clone)]
pub struct Checkpoint {
    path: PathBuf,
    source: Arc<dyn Source>,
    entries: Arc<BTreeMap<String, Entry>>,
}

impl std::fmt::Debug for Checkpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Checkpoint({}, {} tensors)", self.path.display(), self.entries.len())
    }
}

/// The formats [`Checkpoint::open`] knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Safetensors,
    Gguf,
    Npz,
}

/// By extension first (so a `.gguf` with a bad magic number says so), else by magic.
fn detect(path: &Path) -> Result<Format> {
    let name = path.to_string_lossy();
    if name.ends_with(".safetensors") || name.ends_with(".safetensors.index.json") {
        return Ok(Format::Safetensors);
    }
    if name.ends_with(".gguf") {
        return Ok(Format::Gguf);
    }
    if name.ends_with(".npz") {
        return Ok(Format::Npz);
    }
    let mut magic = [0u8; 4];
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    f.read_exact(&mut magic).map_err(|_| Error::format(path, "too short to be a checkpoint"))?;
    match &magic {
        b"GGUF" => Ok(Format::Gguf),
        b"PK\x03\x04" => Ok(Format::Npz),
        _ => Ok(Format::Safetensors),
    }
}

impl Checkpoint {
    /// Opens a safetensors file (or a sharded `*.safetensors.index.json`), a GGUF file
    /// (tensors dequantized to f32) or an `.npz` archive.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let source: Arc<dyn Source> = match detect(path)? {
            Format::Safetensors => Arc::new(Safetensors::open(path)?),
            Format::Gguf => Arc::new(Gguf::open(path)?),
            Format::Npz => Arc::new(npz_source::NpzSource::open(path)?),
        };
        Ok(Self::from_source(path, source))
    }

    /// A checkpoint over an open GGUF file (tensors dequantized to f32).
    pub fn from_gguf(gguf: Gguf) -> Self {
        let path = gguf.path().to_path_buf();
        Self::from_source(&path, Arc::new(gguf))
    }

    fn from_source(path: &Path, source: Arc<dyn Source>) -> Self {
        let entries = source
            .names()
            .into_iter()
            .map(|n| (n.clone(), Entry { stored: n, transform: None }))
            .collect();
        Self { path: path.to_path_buf(), source, entries: Arc::new(entries) }
    }

    /// The same tensors renamed by `table`; names no rule matches keep their name.
    /// Two stored tensors mapped to one name is an error.
    pub fn with_remap(self, table: &RemapTable) -> Result<Self> {
        let mut entries = BTreeMap::new();
        for stored in self.source.names() {
            let mut targets = table.map_all(&stored);
            if targets.is_empty() {
                targets.push((stored.clone(), None));
            }
            for (name, transform) in targets {
                if let Some(prev) =
                    entries.insert(name.clone(), Entry { stored: stored.clone(), transform })
                {
                    let msg =
                        format!("remap sends both `{}` and `{stored}` to `{name}`", prev.stored);
                    return Err(Error::format(&self.path, msg));
                }
            }
        }
        Ok(Self { entries: Arc::new(entries), ..self })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Tensor names (after remapping), sorted.
    pub fn names(&self) -> Vec<String> {
        self.entries.keys().cloned().collect()
    }

    /// True when the checkpoint holds `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    /// Shape of a tensor, if present.
    pub fn shape(&self, name: &str) -> Option<Vec<usize>> {
        let e = self.entries.get(name)?;
        let stored = self.source.shape(&e.stored)?;
        Some(e.transform.map_or_else(|| stored.clone(), |t| t.shape(stored.clone())))
    }

    /// A tensor (transformed by its remap rule) in `dtype` on `device`.
    pub fn tensor(&self, name: &str, dtype: DType, device: &Device) -> Result<Tensor> {
        let entry = self.entry(name)?;
        let mut t = self.source.load(&entry.stored, device)?;
        if let Some(tr) = entry.transform {
            t = tr.apply(&t, name).map_err(|e| Error::format(&self.path, e.to_string()))?;
        }
        Ok(t.to_dtype(dtype)?)
    }

    /// A tensor kept in its stored type (GGUF: quantized), for frozen inference;
    /// a remap transform is applied to the quantized rows.
    pub fn qtensor(&self, name: &str, device: &Device) -> Result<QTensor> {
        let entry = self.entry(name)?;
        let q = self.source.load_quantized(&entry.stored, device)?;
        match entry.transform {
            Some(tr) => {
                tr.apply_quantized(&q, name).map_err(|e| Error::format(&self.path, e.to_string()))
            }
            None => Ok(q),
        }
    }

    fn entry(&self, name: &str) -> Result<&Entry> {
        self.entries
            .get(name)
            .ok_or_else(|| Error::format(&self.path, format!("no tensor `{name}`")))
    }

    /// A var builder over this checkpoint that records every request, and the tracker
    /// whose [`LoadTracker::report`] lists what was missing, unexpected or mismatched.
    /// Missing or mismatched tensors come back as zeros so that construction goes on
    /// and all problems are reported at once.
    pub fn var_builder(
        &self,
        dtype: DType,
        device: &Device,
    ) -> (candle_nn::VarBuilder<'static>, LoadTracker) {
        tracker::var_builder(self.clone(), dtype, device)
    }
}
