//! Safetensors checkpoints, memory-mapped: one file, or the shards listed by a
//! Hugging Face `model.safetensors.index.json`.

use std::path::{Path, PathBuf};

use candle_core::safetensors::{Load, MmapedSafetensors};
use candle_core::{Device, Tensor};

use super::{candle_msg, Source};
use crate::{Error, Result};

/// A memory-mapped safetensors checkpoint (one file or several shards).
pub struct Safetensors {
    path: PathBuf,
    inner: MmapedSafetensors,
    names: Vec<String>,
}

impl std::fmt::Debug for Safetensors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Safetensors({}, {} tensors)", self.path.display(), self.names.len())
    }
}

/// Maps the files read-only; the header of each is parsed and validated.
#[allow(unsafe_code)]
fn map_files(paths: &[PathBuf]) -> candle_core::Result<MmapedSafetensors> {
    // SAFETY: a memory map is undefined behaviour if the file changes while mapped.
    // Checkpoints are opened read-only and Braid never writes a file it has mapped
    // (it writes checkpoints through a `.tmp` file renamed into place, which leaves
    // the mapped inode untouched).
    unsafe {
        match paths {
            [one] => MmapedSafetensors::new(one),
            _ => MmapedSafetensors::multi(paths),
        }
    }
}

impl Safetensors {
    /// Opens a `.safetensors` file, or every shard of a `*.safetensors.index.json`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let files = if path.to_string_lossy().ends_with(".index.json") {
            shard_files(&path)?
        } else {
            vec![path.clone()]
        };
        for f in &files {
            std::fs::metadata(f).map_err(|e| Error::io(f, e))?;
        }
        let inner = map_files(&files).map_err(|e| {
            Error::format(&path, format!("not a readable safetensors file: {}", candle_msg(e)))
        })?;
        let mut names: Vec<String> = inner.tensors().into_iter().map(|(n, _)| n).collect();
        names.sort();
        names.dedup();
        Ok(Self { path, inner, names })
    }

    /// The file opened (the index for a sharded checkpoint).
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The shard files of an index, in order of first appearance, beside the index.
fn shard_files(index: &Path) -> Result<Vec<PathBuf>> {
    let text = std::fs::read_to_string(index).map_err(|e| Error::io(index, e))?;
    let json: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::format(index, format!("bad index JSON: {e}")))?;
    let map = json
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| Error::format(index, "index has no `weight_map` object"))?;
    let dir = index.parent().unwrap_or(Path::new("."));
    let mut files: Vec<PathBuf> = Vec::new();
    for (name, file) in map {
        let file = file
            .as_str()
            .ok_or_else(|| Error::format(index, format!("`{name}` maps to a non-string")))?;
        let file = dir.join(file);
        if !files.contains(&file) {
            files.push(file);
        }
    }
    if files.is_empty() {
        return Err(Error::format(index, "index lists no shards"));
    }
    Ok(files)
}

impl Source for Safetensors {
    fn names(&self) -> Vec<String> {
        self.names.clone()
    }

    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.inner.get(name).ok().map(|v| v.shape().to_vec())
    }

    fn load(&self, name: &str, device: &Device) -> Result<Tensor> {
        let view = self
            .inner
            .get(name)
            .map_err(|e| Error::format(&self.path, format!("{name}: {}", candle_msg(e))))?;
        view.load(device)
            .map_err(|e| Error::format(&self.path, format!("{name}: {}", candle_msg(e))))
    }
}
