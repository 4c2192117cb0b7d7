//! A `.npz` archive as a checkpoint: every array read into memory once.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};

use super::npy::NpyArray;
use super::{npz::read_npz, Source};
use crate::Result;

/// The arrays of a `.npz` archive, by key.
#[derive(Debug)]
pub(super) struct NpzSource {
    path: PathBuf,
    names: Vec<String>,
    arrays: HashMap<String, NpyArray>,
}

impl NpzSource {
    /// Reads every array of the archive.
    pub(super) fn open(path: &Path) -> Result<Self> {
        let arrays = read_npz(path)?;
        let names = arrays.iter().map(|(n, _)| n.clone()).collect();
        Ok(Self { path: path.to_path_buf(), names, arrays: arrays.into_iter().collect() })
    }
}

impl Source for NpzSource {
    fn names(&self) -> Vec<String> {
        self.names.clone()
    }

    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.arrays.get(name).map(|a| a.shape.clone())
    }

    fn load(&self, name: &str, device: &Device) -> Result<Tensor> {
        match self.arrays.get(name) {
            Some(a) => a.to_tensor(device),
            None => Err(crate::Error::format(&self.path, format!("no array `{name}`"))),
        }
    }
}
