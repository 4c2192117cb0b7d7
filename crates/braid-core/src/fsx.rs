//! Writing a file or a directory so that a reader never sees half of it: the content goes
//! into a fresh sibling created exclusively (a planted file or link at that name is
//! removed or refused, never followed), flushed to disk, then the sibling takes the final
//! name.

use std::fs;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// Fills a new directory with `fill` and puts it at `dir`, replacing what was there only
/// once the new content is complete and on disk. A failure leaves `dir` as it was.
pub fn replace_dir(dir: &Path, fill: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let tmp = sibling(dir, "tmp");
    remove_stale(&tmp)?;
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    // create_dir fails on anything already there, a symlink included.
    fs::create_dir(&tmp).map_err(|e| Error::io(&tmp, e))?;
    let filled = fill(&tmp).and_then(|()| sync_tree(&tmp));
    if let Err(e) = filled {
        let _ = fs::remove_dir_all(&tmp);
        return Err(e);
    }
    let old = sibling(dir, "old");
    remove_stale(&old)?;
    if fs::symlink_metadata(dir).is_ok() {
        fs::rename(dir, &old).map_err(|e| Error::io(dir, e))?;
    }
    fs::rename(&tmp, dir).map_err(|e| Error::io(dir, e))?;
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        // The renames themselves reach the disk with the parent directory.
        if let Ok(f) = fs::File::open(parent) {
            let _ = f.sync_all();
        }
    }
    remove_stale(&old)
}

/// Writes the file `path` through `path.tmp`, renamed into place once `write` is done and
/// the data is on disk. The temporary file is created exclusively (`O_EXCL`): a leftover
/// or a planted link at `path.tmp` is removed first (the link, never its target), and one
/// planted again in between makes the write fail instead of writing through it.
pub fn write_file_with(
    path: &Path,
    write: impl FnOnce(&mut fs::File) -> std::io::Result<()>,
) -> Result<()> {
    let tmp = sibling(path, "tmp");
    if fs::symlink_metadata(&tmp).is_ok_and(|m| !m.is_dir()) {
        fs::remove_file(&tmp).map_err(|e| Error::io(&tmp, e))?;
    }
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(|e| Error::io(&tmp, e))?;
    if let Err(e) = write(&mut f).and_then(|()| f.sync_all()) {
        drop(f);
        let _ = fs::remove_file(&tmp);
        return Err(Error::io(&tmp, e));
    }
    drop(f);
    fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

/// [`write_file_with`] for writers that only take a path (candle's safetensors `save`,
/// which streams tensor by tensor): `write` fills `path.tmp/<file name>`, inside a
/// directory created exclusively (a planted link at `path.tmp` is removed, never followed,
/// and nobody else's link can sit inside the new directory), then the file is synced and
/// renamed to `path`. A failure leaves `path` as it was.
pub fn write_file_at(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| Error::Invalid(format!("{}: not a file name to write", path.display())))?;
    let dir = sibling(path, "tmp");
    remove_stale(&dir)?;
    fs::create_dir(&dir).map_err(|e| Error::io(&dir, e))?;
    let tmp = dir.join(name);
    let done = write(&tmp)
        .and_then(|()| {
            fs::File::open(&tmp).and_then(|f| f.sync_all()).map_err(|e| Error::io(&tmp, e))
        })
        .and_then(|()| fs::rename(&tmp, path).map_err(|e| Error::io(path, e)));
    let _ = fs::remove_dir_all(&dir);
    done
}

/// [`write_file_with`] for bytes already in memory.
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    write_file_with(path, |f| f.write_all(bytes))
}

/// `dir` with `.suffix` appended to its last component.
fn sibling(dir: &Path, suffix: &str) -> PathBuf {
    let mut s = dir.as_os_str().to_os_string();
    s.push(format!(".{suffix}"));
    PathBuf::from(s)
}

/// Removes a leftover of an interrupted write: a directory tree, or a file or link itself
/// (never what a link points to).
fn remove_stale(path: &Path) -> Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path).map_err(|e| Error::io(path, e)),
        Ok(_) => fs::remove_file(path).map_err(|e| Error::io(path, e)),
        Err(_) => Ok(()),
    }
}

fn sync_tree(dir: &Path) -> Result<()> {
    for entry in fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let path = entry.map_err(|e| Error::io(dir, e))?.path();
        let meta = fs::symlink_metadata(&path).map_err(|e| Error::io(&path, e))?;
        if meta.is_dir() {
            sync_tree(&path)?;
        } else if meta.is_file() {
            fs::File::open(&path).and_then(|f| f.sync_all()).map_err(|e| Error::io(&path, e))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn tmp() -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }

    #[test]
    fn replaces_only_when_complete() -> Result<()> {
        let root = tmp();
        let dir = root.path().join("model");
        replace_dir(&dir, |d| fs::write(d.join("a"), "1").map_err(|e| Error::io(d, e)))?;
        assert_eq!(fs::read_to_string(dir.join("a")).ok().as_deref(), Some("1"));
        let failed = replace_dir(&dir, |d| {
            fs::write(d.join("a"), "2").map_err(|e| Error::io(d, e))?;
            Err(Error::Invalid("disk full".into()))
        });
        assert!(failed.is_err());
        assert_eq!(
            fs::read_to_string(dir.join("a")).ok().as_deref(),
            Some("1"),
            "a failed write left the old model"
        );
        replace_dir(&dir, |d| fs::write(d.join("b"), "3").map_err(|e| Error::io(d, e)))?;
        assert!(!dir.join("a").exists() && dir.join("b").exists());
        assert!(!sibling(&dir, "tmp").exists() && !sibling(&dir, "old").exists());
        Ok(())
    }

    #[cfg(unix)]
    #[test]
    fn a_planted_link_at_a_file_s_temporary_name_is_not_followed() -> Result<()> {
        let root = tmp();
        let victim = root.path().join("victim.txt");
        fs::write(&victim, "keep").map_err(|e| Error::io(&victim, e))?;
        let out = root.path().join("eval.json");
        std::os::unix::fs::symlink(&victim, sibling(&out, "tmp"))
            .map_err(|e| Error::io(&victim, e))?;
        write_file(&out, b"{}")?;
        assert_eq!(fs::read_to_string(&victim).ok().as_deref(), Some("keep"));
        assert_eq!(fs::read_to_string(&out).ok().as_deref(), Some("{}"));
        assert!(fs::symlink_metadata(sibling(&out, "tmp")).is_err());
        // A directory planted there is refused, not written into.
        fs::create_dir(sibling(&out, "tmp")).map_err(|e| Error::io(&out, e))?;
        assert!(write_file(&out, b"[]").is_err());
        assert_eq!(fs::read_to_string(&out).ok().as_deref(), Some("{}"));
        Ok(())
    }

    #[cfg(unix)]
    #[test]
    fn planted_link_write_file_at_tmp() -> Result<()> {
        let root = tmp();
        let victim = root.path().join("victim.bin");
        fs::write(&victim, "keep").map_err(|e| Error::io(&victim, e))?;
        let out = root.path().join("w.safetensors");
        std::os::unix::fs::symlink(&victim, sibling(&out, "tmp"))
            .map_err(|e| Error::io(&victim, e))?;
        write_file_at(&out, |p| fs::write(p, "new").map_err(|e| Error::io(p, e)))?;
        assert_eq!(fs::read_to_string(&victim).ok().as_deref(), Some("keep"));
        assert_eq!(fs::read_to_string(&out).ok().as_deref(), Some("new"));
        assert!(fs::symlink_metadata(sibling(&out, "tmp")).is_err());
        // A failed write leaves the old file and no temporary behind.
        let failed = write_file_at(&out, |p| {
            fs::write(p, "half").map_err(|e| Error::io(p, e))?;
            Err(Error::Invalid("disk full".into()))
        });
        assert!(failed.is_err());
        assert_eq!(fs::read_to_string(&out).ok().as_deref(), Some("new"));
        assert!(fs::symlink_metadata(sibling(&out, "tmp")).is_err());
        Ok(())
    }

    #[cfg(unix)]
    #[test]
    fn a_planted_link_at_the_temporary_name_is_not_followed() -> Result<()> {
        let root = tmp();
        let victim = root.path().join("victim");
        fs::create_dir(&victim).map_err(|e| Error::io(&victim, e))?;
        fs::write(victim.join("keep"), "x").map_err(|e| Error::io(&victim, e))?;
        let dir = root.path().join("model");
        std::os::unix::fs::symlink(&victim, sibling(&dir, "tmp"))
            .map_err(|e| Error::io(&victim, e))?;
        replace_dir(&dir, |d| fs::write(d.join("a"), "1").map_err(|e| Error::io(d, e)))?;
        assert!(victim.join("keep").exists() && !victim.join("a").exists());
        assert!(dir.join("a").exists());
        Ok(())
    }
}
