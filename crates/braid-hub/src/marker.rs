//! The marker `.braid-fetched.json` that a completed install leaves in its folder: the
//! archive's digest and every file's size. A folder is trusted only if the marker matches
//! the registry's pinned digest and every file is present with its size, so a rerun of a
//! completed fetch is a cheap no-op and a damaged folder is reinstalled.

use std::path::{Path, PathBuf};

use braid_core::{Error, Result};
use serde::{Deserialize, Serialize};

/// File name of the marker inside an entry's folder.
pub(crate) const MARKER: &str = ".braid-fetched.json";

#[derive(Serialize, Deserialize)]
pub(crate) struct Marker {
    pub name: String,
    pub archive: String,
    pub sha256: String,
    /// `(relative path, size)` of every installed file.
    pub files: Vec<(String, u64)>,
}

impl Marker {
    /// Records the files under `dir` (recursively, marker excluded).
    pub(crate) fn scan(name: &str, archive: &str, sha256: &str, dir: &Path) -> Result<Self> {
        let mut files = Vec::new();
        walk(dir, dir, &mut files)?;
        files.sort();
        Ok(Self { name: name.into(), archive: archive.into(), sha256: sha256.into(), files })
    }

    pub(crate) fn write(&self, dir: &Path) -> Result<()> {
        let path = dir.join(MARKER);
        let text =
            serde_json::to_string_pretty(self).map_err(|e| Error::format(&path, e.to_string()))?;
        std::fs::write(&path, text).map_err(|e| Error::io(path, e))
    }

    /// The marker in `dir` if it pins `sha256` and all its files are intact.
    pub(crate) fn valid(dir: &Path, sha256: &str) -> Option<Self> {
        let text = std::fs::read_to_string(dir.join(MARKER)).ok()?;
        let m: Marker = serde_json::from_str(&text).ok()?;
        let intact = m
            .files
            .iter()
            .all(|(f, n)| std::fs::metadata(dir.join(f)).is_ok_and(|md| md.len() == *n));
        (m.sha256 == sha256 && intact).then_some(m)
    }

    pub(crate) fn paths(&self, dir: &Path) -> Vec<PathBuf> {
        self.files.iter().map(|(f, _)| dir.join(f)).collect()
    }
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, u64)>) -> Result<()> {
    for e in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let e = e.map_err(|e| Error::io(dir, e))?;
        let p = e.path();
        let md = e.metadata().map_err(|err| Error::io(&p, err))?;
        if md.is_dir() {
            walk(root, &p, out)?;
        } else if p.file_name().is_some_and(|n| n != MARKER) {
            let rel = p.strip_prefix(root).unwrap_or(&p).to_string_lossy().replace('\\', "/");
            out.push((rel, md.len()));
        }
    }
    Ok(())
}
