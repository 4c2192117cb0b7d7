//! Checkpoints that survive being killed mid-write. Each one is a directory
//! `checkpoints/step-NNNNNNN/` built under a `.tmp` name and renamed into place only once
//! complete (its `state.json` is written last and synced), after which the one-line
//! `checkpoints/latest` file is replaced through a rename as well. A run killed at any
//! moment leaves either the previous checkpoint or the new one as `latest`, never a
//! half-written one; stale `.tmp` directories are removed by the next save.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use braid_core::{Error, Result};
use candle_core::{Device, Tensor, Var};
use serde::{Deserialize, Serialize};

use crate::order::Cursor;

/// Trainable variables of a checkpoint.
pub const WEIGHTS_FILE: &str = "trainable.safetensors";
/// AdamW moments and step counts.
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
/// [`TrainState`] as JSON; its presence marks a complete checkpoint.
pub const STATE_FILE: &str = "state.json";
/// The resolved training configuration (the recipe as run).
pub const CONFIG_FILE: &str = "config.toml";
const LATEST: &str = "latest";

/// Loop position and bookkeeping saved with every checkpoint.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Optimiser steps taken.
    pub step: usize,
    /// Position in the seeded data order.
    pub cursor: Cursor,
    /// Examples seen so far.
    pub samples: u64,
    /// Training loss of the last step.
    pub last_loss: Option<f64>,
}

/// The `checkpoints/` folder of a run.
#[derive(Debug, Clone)]
pub struct CheckpointDir {
    root: PathBuf,
}

impl CheckpointDir {
    /// Checkpoints under `run_dir/checkpoints`.
    pub fn new(run_dir: &Path) -> Self {
        Self { root: run_dir.join("checkpoints") }
    }

    /// The folder holding the checkpoints.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// Writes a checkpoint for `state.step`: `fill` writes the files into the directory it
    /// is given; [`STATE_FILE`] is added last. Keeps the newest `keep` checkpoints.
    pub fn save(
        &self,
        state: &TrainState,
        keep: usize,
        fill: impl FnOnce(&Path) -> Result<()>,
    ) -> Result<PathBuf> {
        fs::create_dir_all(&self.root).map_err(|e| Error::io(&self.root, e))?;
        self.remove_partial()?;
        let name = format!("step-{:07}", state.step);
        let tmp = self.root.join(format!("{name}.tmp"));
        let dir = self.root.join(&name);
        // create_dir, not create_dir_all: a link planted at the name is refused, not
        // followed (remove_partial has just removed our own leftovers).
        fs::create_dir(&tmp).map_err(|e| Error::io(&tmp, e))?;
        fill(&tmp)?;
        let json = serde_json::to_string_pretty(state)
            .map_err(|e| Error::format(tmp.join(STATE_FILE), e.to_string()))?;
        write_synced(&tmp.join(STATE_FILE), json.as_bytes())?;
        if dir.exists() {
            fs::remove_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        }
        fs::rename(&tmp, &dir).map_err(|e| Error::io(&dir, e))?;
        braid_core::fsx::write_file(&self.root.join(LATEST), name.as_bytes())?;
        sync_dir(&self.root);
        self.prune(keep)?;
        Ok(dir)
    }

    /// The newest complete checkpoint: the one `latest` names, or, when that is missing or
    /// incomplete, the highest-numbered directory with a [`STATE_FILE`].
    pub fn latest(&self) -> Result<Option<PathBuf>> {
        if let Ok(name) = fs::read_to_string(self.root.join(LATEST)) {
            let dir = self.root.join(name.trim());
            if dir.join(STATE_FILE).is_file() {
                return Ok(Some(dir));
            }
        }
        Ok(self.complete()?.pop())
    }

    /// Complete checkpoints, oldest first.
    fn complete(&self) -> Result<Vec<PathBuf>> {
        if !self.root.is_dir() {
            return Ok(Vec::new());
        }
        let mut dirs: Vec<PathBuf> = fs::read_dir(&self.root)
            .map_err(|e| Error::io(&self.root, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("step-") && !n.ends_with(".tmp"))
            })
            .filter(|p| p.join(STATE_FILE).is_file())
            .collect();
        dirs.sort();
        Ok(dirs)
    }

    fn prune(&self, keep: usize) -> Result<()> {
        let dirs = self.complete()?;
        for old in dirs.iter().take(dirs.len().saturating_sub(keep.max(1))) {
            fs::remove_dir_all(old).map_err(|e| Error::io(old, e))?;
        }
        Ok(())
    }

    fn remove_partial(&self) -> Result<()> {
        for entry in fs::read_dir(&self.root).map_err(|e| Error::io(&self.root, e))?.flatten() {
            let p = entry.path();
            if p.extension().is_some_and(|e| e == "tmp") && p.is_dir() {
                fs::remove_dir_all(&p).map_err(|e| Error::io(&p, e))?;
            }
        }
        Ok(())
    }
}

/// Reads a checkpoint's [`TrainState`].
pub fn read_state(dir: &Path) -> Result<TrainState> {
    let path = dir.join(STATE_FILE);
    let text = fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::format(&path, e.to_string()))
}

/// Saves named variables to a safetensors file.
pub fn save_vars(vars: &[(String, Var)], path: &Path) -> Result<()> {
    let map: HashMap<String, Tensor> =
        vars.iter().map(|(n, v)| (n.clone(), v.as_tensor().clone())).collect();
    candle_core::safetensors::save(&map, path)?;
    Ok(())
}

/// Sets every variable from `path`; a missing, extra or differently shaped tensor is an
/// error naming it and the file.
pub fn load_vars(vars: &[(String, Var)], path: &Path) -> Result<()> {
    if !path.is_file() {
        return Err(Error::io(path, std::io::Error::from(std::io::ErrorKind::NotFound)));
    }
    let mut saved = candle_core::safetensors::load(path, &Device::Cpu)
        .map_err(|e| Error::format(path, e.to_string()))?;
    for (name, var) in vars {
        let t = saved
            .remove(name)
            .ok_or_else(|| Error::format(path, format!("lacks trainable variable `{name}`")))?;
        if t.dims() != var.dims() {
            return Err(Error::shape(
                format!("{name} in {}", path.display()),
                var.dims(),
                t.dims(),
            ));
        }
        var.set(&t.to_device(var.device())?.to_dtype(var.dtype())?)?;
    }
    if let Some(extra) = saved.keys().next() {
        return Err(Error::format(
            path,
            format!("holds `{extra}`, which this model does not train"),
        ));
    }
    Ok(())
}

/// Writes `bytes` to `path` and syncs it to disk.
fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut f = fs::File::create(path).map_err(|e| Error::io(path, e))?;
    f.write_all(bytes).map_err(|e| Error::io(path, e))?;
    f.sync_all().map_err(|e| Error::io(path, e))
}

/// Best effort: makes renames in `dir` durable (not possible on every platform).
fn sync_dir(dir: &Path) {
    if let Ok(f) = fs::File::open(dir) {
        let _ = f.sync_all();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn state(step: usize) -> TrainState {
        TrainState { step, ..Default::default() }
    }

    #[test]
    fn latest_survives_a_partial_write_and_old_ones_are_pruned() {
        let run = tempfile::tempdir().unwrap();
        let ck = CheckpointDir::new(run.path());
        assert_eq!(ck.latest().unwrap(), None);
        for step in [1, 2, 3] {
            ck.save(&state(step), 2, |d| {
                fs::write(d.join("w"), [step as u8]).unwrap();
                Ok(())
            })
            .unwrap();
        }
        let latest = ck.latest().unwrap().unwrap();
        assert!(latest.ends_with("step-0000003"));
        assert!(!ck.path().join("step-0000001").exists());
        // A write that dies before completing leaves `latest` as it was.
        let failed = ck.save(&state(4), 2, |_| Err(Error::Invalid("killed".into())));
        assert!(failed.is_err());
        assert_eq!(read_state(&ck.latest().unwrap().unwrap()).unwrap().step, 3);
        // `latest` pointing at a directory that vanished falls back to the newest complete one.
        fs::write(ck.path().join(LATEST), "step-0000009").unwrap();
        assert!(ck.latest().unwrap().unwrap().ends_with("step-0000003"));
        ck.save(&state(5), 2, |_| Ok(())).unwrap();
        assert!(!ck.path().join("step-0000004.tmp").exists());
    }
}
