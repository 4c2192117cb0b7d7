//! An image-classification folder in torchvision's `ImageFolder` layout, one folder per
//! split: `DIR/<split>/<class>/<image>` (PNG, JPEG, ...). The classes are the sub-folders
//! of `DIR/train` (or of the split when there is no `train`), in the order of
//! `DIR/classes.txt` when it exists (one folder name a line), else sorted by name. A class
//! name with `_` reads as a space in prompts (`t-shirt_top` -> "t-shirt top").

use std::path::{Path, PathBuf};

use braid_core::{Error, Result};

/// Extensions read as images.
const IMAGE_EXTENSIONS: &[&str] = &["png", "jpg", "jpeg", "bmp", "gif", "webp"];

/// One split of an image folder.
#[derive(Debug, Clone)]
pub struct ImageFolder {
    /// Class names (folder names), in label order.
    pub classes: Vec<String>,
    /// Every image with its label, grouped by class, each class's files sorted by name.
    pub items: Vec<(PathBuf, usize)>,
}

impl ImageFolder {
    /// Reads `dir/split`. Errors name the folder: a missing split, a class folder that is
    /// missing or empty, fewer than two classes.
    pub fn open(dir: &Path, split: &str) -> Result<Self> {
        let classes = class_names(dir, split)?;
        let root = dir.join(split);
        let mut items = Vec::new();
        for (label, class) in classes.iter().enumerate() {
            let folder = root.join(class);
            let mut files: Vec<PathBuf> = std::fs::read_dir(&folder)
                .map_err(|e| Error::io(&folder, e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && is_image(p))
                .collect();
            if files.is_empty() {
                return Err(Error::format(&folder, "no images in this class folder"));
            }
            files.sort();
            items.extend(files.into_iter().map(|p| (p, label)));
        }
        Ok(Self { classes, items })
    }

    /// Images per class, in label order.
    pub fn counts(&self) -> Vec<usize> {
        let mut n = vec![0; self.classes.len()];
        for &(_, l) in &self.items {
            n[l] += 1;
        }
        n
    }
}

/// The class folder names of `dir`, in label order (see the module docs).
pub fn class_names(dir: &Path, split: &str) -> Result<Vec<String>> {
    let listed = dir.join("classes.txt");
    let names: Vec<String> = if listed.is_file() {
        std::fs::read_to_string(&listed)
            .map_err(|e| Error::io(&listed, e))?
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect()
    } else {
        let base = if dir.join("train").is_dir() { dir.join("train") } else { dir.join(split) };
        let mut v: Vec<String> = std::fs::read_dir(&base)
            .map_err(|e| Error::io(&base, e))?
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_dir())
            .filter_map(|e| e.file_name().to_str().map(String::from))
            .collect();
        v.sort();
        v
    };
    if names.len() < 2 {
        return Err(Error::format(
            dir,
            format!("an image folder needs at least two class folders, found {}", names.len()),
        ));
    }
    if let Some(bad) = names.iter().find(|n| n.contains(['/', '\\']) || *n == ".." || *n == ".") {
        return Err(Error::format(&listed, format!("`{bad}` is not a folder name")));
    }
    Ok(names)
}

fn is_image(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}
