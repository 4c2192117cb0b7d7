//! Turning what a user typed (`minilm`, `./my-model`, `hf:ORG/NAME`) into a local path.

use std::path::{Path, PathBuf};

use braid_core::{Error, Result};

use crate::fetch::{entry_dir, is_fetched};
use crate::options::home;
use crate::registry::{find, registry};

/// A registered name -> its cached folder or main file (erroring with the `braid fetch`
/// command if it is not fetched); an existing path -> itself; `hf:ORG/NAME` -> its cache
/// folder if fetched; anything else -> [`Error::Unknown`] listing the registered names.
pub fn resolve_model(name_or_path: &str) -> Result<PathBuf> {
    resolve_in(name_or_path, &home())
}

/// [`resolve_model`] against the cache root `home`.
pub fn resolve_in(name_or_path: &str, home: &Path) -> Result<PathBuf> {
    if let Ok(entry) = find(name_or_path) {
        if !is_fetched(entry, home) {
            return Err(Error::Invalid(format!(
                "`{name_or_path}` is not fetched yet; run `braid fetch {name_or_path}` (cache: {})",
                home.display()
            )));
        }
        let dir = entry_dir(entry, home);
        return Ok(if entry.main.is_empty() { dir } else { dir.join(entry.main) });
    }
    if let Some(repo) = name_or_path.strip_prefix("hf:") {
        let dir = crate::hf::hf_dir(repo, home);
        if dir.is_dir() {
            return Ok(dir);
        }
        return Err(Error::Invalid(format!(
            "`{name_or_path}` is not fetched yet; run `braid fetch {name_or_path}`"
        )));
    }
    let p = Path::new(name_or_path);
    if p.exists() {
        return Ok(p.to_path_buf());
    }
    Err(Error::unknown("model, dataset or path", name_or_path, registry().iter().map(|e| e.name)))
}

/// The registered name whose fetched folder or main file is `path` (the inverse of
/// [`resolve_model`]), so that what a run writes names a packaged model as the user did,
/// not by this machine's cache path.
pub fn registered_name(path: &Path) -> Option<&'static str> {
    registered_name_in(path, &home())
}

/// [`registered_name`] against the cache root `home`.
pub fn registered_name_in(path: &Path, home: &Path) -> Option<&'static str> {
    registry().iter().map(|e| e.name).find(|name| resolve_in(name, home).is_ok_and(|p| p == path))
}

/// The one resolver for a name written in a config file (a recipe, `pipeline.toml`): a
/// registered name -> its fetched folder or main file; `hf:ORG/NAME` -> its cache folder;
/// anything else -> a path, relative to `base` (the directory of the file that names it)
/// unless absolute. Errors name `field` and say what was tried.
pub fn resolve_field(name_or_path: &str, base: &Path, field: &str) -> Result<PathBuf> {
    resolve_field_in(name_or_path, base, field, &home())
}

/// [`resolve_field`] against the cache root `home`.
pub fn resolve_field_in(
    name_or_path: &str,
    base: &Path,
    field: &str,
    home: &Path,
) -> Result<PathBuf> {
    if name_or_path.trim().is_empty() {
        return Err(Error::config(
            field,
            "is empty; expected a registered name, `hf:ORG/NAME` or a path",
        ));
    }
    if find(name_or_path).is_ok() || name_or_path.starts_with("hf:") {
        return resolve_in(name_or_path, home).map_err(|e| Error::config(field, e.to_string()));
    }
    let p = Path::new(name_or_path);
    let full = if p.is_absolute() { p.to_path_buf() } else { base.join(p) };
    if full.exists() {
        return Ok(full);
    }
    Err(Error::config(
        field,
        format!(
            "`{name_or_path}` is neither a registered name (see `braid fetch --list`) nor an existing path (looked for {})",
            full.display()
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_paths_and_unknowns() -> Result<()> {
        let empty = tempfile::tempdir().map_err(|e| Error::io("tmp", e))?;
        let e =
            resolve_in("smollm2", empty.path()).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("run `braid fetch smollm2`"), "{e}");
        assert_eq!(resolve_in(".", empty.path())?, PathBuf::from("."));
        let e = resolve_in("no-such-model", empty.path())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            e.starts_with("unknown model, dataset or path `no-such-model`; known: minilm,"),
            "{e}"
        );
        Ok(())
    }

    #[test]
    fn a_fetched_entry_s_path_gives_back_its_name() -> Result<()> {
        let empty = tempfile::tempdir().map_err(|e| Error::io("tmp", e))?;
        assert_eq!(registered_name_in(Path::new("."), empty.path()), None);
        assert_eq!(registered_name_in(&empty.path().join("models/minilm"), empty.path()), None);
        if let Ok(p) = resolve_model("minilm") {
            assert_eq!(registered_name(&p), Some("minilm"));
        }
        Ok(())
    }

    #[test]
    fn config_fields_resolve_relative_to_their_file() -> Result<()> {
        let base = tempfile::tempdir().map_err(|e| Error::io("tmp", e))?;
        std::fs::create_dir(base.path().join("vision")).map_err(|e| Error::io("mkdir", e))?;
        let empty = tempfile::tempdir().map_err(|e| Error::io("tmp", e))?;
        assert_eq!(
            resolve_field_in("vision", base.path(), "model.vision", empty.path())?,
            base.path().join("vision")
        );
        let e = resolve_field_in("nope", base.path(), "model.vision", empty.path())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            e.contains("model.vision") && e.contains("nope") && e.contains("looked for"),
            "{e}"
        );
        let e = resolve_field_in("smollm2", base.path(), "model.llm", empty.path())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("model.llm") && e.contains("braid fetch smollm2"), "{e}");
        assert!(resolve_field_in("", base.path(), "data.path", empty.path()).is_err());
        Ok(())
    }
}
