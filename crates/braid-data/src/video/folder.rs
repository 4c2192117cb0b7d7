//! A folder of frame images, in natural order (`frame2.png` before `frame10.png`).

use std::path::{Path, PathBuf};

use braid_core::{Error, Result};

const IMAGE_EXTENSIONS: [&str; 6] = ["png", "jpg", "jpeg", "bmp", "webp", "gif"];

/// The image files in `dir`, naturally sorted.
pub fn frame_paths(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
        })
        .collect();
    if paths.is_empty() {
        return Err(Error::format(dir, "no frame images (png, jpg, bmp, webp) in this folder"));
    }
    paths.sort_by_key(|p| {
        natural_key(&p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default())
    });
    Ok(paths)
}

/// Runs of digits compare as numbers, the rest as text.
fn natural_key(name: &str) -> Vec<(String, u64)> {
    let mut key = Vec::new();
    let mut text = String::new();
    let mut chars = name.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() {
            let mut n = u64::from(c as u8 - b'0');
            while let Some(d) = chars.peek().copied().filter(char::is_ascii_digit) {
                n = n.saturating_mul(10).saturating_add(u64::from(d as u8 - b'0'));
                chars.next();
            }
            key.push((std::mem::take(&mut text), n));
        } else {
            text.push(c);
        }
    }
    key.push((text, 0));
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorts_naturally_and_skips_other_files() {
        let dir = tempfile::tempdir().unwrap();
        for n in ["f10.png", "f2.png", "f1.png", "notes.txt"] {
            std::fs::write(dir.path().join(n), b"").unwrap();
        }
        let names: Vec<_> = frame_paths(dir.path())
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_owned())
            .collect();
        assert_eq!(names, ["f1.png", "f2.png", "f10.png"]);
        let empty = tempfile::tempdir().unwrap();
        assert!(frame_paths(empty.path()).unwrap_err().to_string().contains("no frame images"));
    }
}
