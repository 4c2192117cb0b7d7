//! Pulling the registered members out of an archive: wheels are zip files (PEP 427),
//! sdists and npm packages are gzipped tar files. Member paths map to destinations by
//! [`Member`]; hidden files (`.DS_Store`, `.gitattributes`) inside folders are skipped, and
//! nothing may land outside the destination folder.

use std::fs::File;
use std::io::Read;
use std::path::{Component, Path};

use braid_core::{Error, Result};
use flate2::read::GzDecoder;

use crate::entry::Member;

/// Destination (relative) for archive member `name`, if it is wanted.
pub(crate) fn map_member(members: &[Member], name: &str) -> Option<String> {
    members.iter().find_map(|m| {
        if let Some(prefix) = m.from.strip_suffix('/') {
            let rest = name.strip_prefix(prefix)?.strip_prefix('/')?;
            let hidden = rest.split('/').any(|s| s.starts_with('.'));
            (!rest.is_empty() && !rest.ends_with('/') && !hidden).then(|| format!("{}{rest}", m.to))
        } else {
            (name == m.from).then(|| m.to.to_string())
        }
    })
}

/// True if `rel` stays inside the folder it is joined to.
pub(crate) fn is_safe_relative(rel: &str) -> bool {
    !rel.is_empty() && Path::new(rel).components().all(|c| matches!(c, Component::Normal(_)))
}

/// Calls `each(destination, reader)` for every wanted member of `archive`; errors if an
/// exact (non-folder) member is missing or a folder member matches nothing.
pub(crate) fn for_each_member(
    archive: &Path,
    members: &[Member],
    mut each: impl FnMut(&str, &mut dyn Read) -> Result<()>,
) -> Result<()> {
    let mut seen = vec![false; members.len()];
    let mut visit = |name: &str, r: &mut dyn Read| -> Result<()> {
        let Some(dest) = map_member(members, name) else { return Ok(()) };
        if !is_safe_relative(&dest) {
            return Err(Error::format(
                archive,
                format!("member `{name}` would leave the cache folder"),
            ));
        }
        for (i, m) in members.iter().enumerate() {
            seen[i] |= name == m.from || (m.from.ends_with('/') && name.starts_with(m.from));
        }
        each(&dest, r)
    };
    let name = archive.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    if name.ends_with(".whl") || name.ends_with(".zip") {
        walk_zip(archive, &mut visit)?;
    } else {
        walk_tar_gz(archive, &mut visit)?;
    }
    match members.iter().zip(&seen).find(|(_, s)| !**s) {
        Some((m, _)) => Err(Error::format(archive, format!("archive has no member `{}`", m.from))),
        None => Ok(()),
    }
}

type Visit<'a> = dyn FnMut(&str, &mut dyn Read) -> Result<()> + 'a;

fn walk_zip(archive: &Path, visit: &mut Visit<'_>) -> Result<()> {
    let f = File::open(archive).map_err(|e| Error::io(archive, e))?;
    let mut z = zip::ZipArchive::new(f).map_err(|e| Error::format(archive, e.to_string()))?;
    for i in 0..z.len() {
        let mut file = z.by_index(i).map_err(|e| Error::format(archive, e.to_string()))?;
        if file.is_dir() {
            continue;
        }
        let name = file.name().to_string();
        visit(&name, &mut file)?;
    }
    Ok(())
}

fn walk_tar_gz(archive: &Path, visit: &mut Visit<'_>) -> Result<()> {
    let f = File::open(archive).map_err(|e| Error::io(archive, e))?;
    let mut t = tar::Archive::new(GzDecoder::new(std::io::BufReader::new(f)));
    let bad = |e: std::io::Error| Error::format(archive, e.to_string());
    for entry in t.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = entry.path().map_err(bad)?.to_string_lossy().into_owned();
        visit(&name, &mut entry)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_map_to_destinations() {
        let ms =
            [Member { from: "pkg/model/", to: "" }, Member { from: "pkg/x.gguf", to: "x.gguf" }];
        assert_eq!(
            map_member(&ms, "pkg/model/1_Pooling/config.json").as_deref(),
            Some("1_Pooling/config.json")
        );
        assert_eq!(map_member(&ms, "pkg/model/.gitattributes"), None);
        assert_eq!(map_member(&ms, "pkg/modelx/a"), None);
        assert_eq!(map_member(&ms, "pkg/x.gguf").as_deref(), Some("x.gguf"));
        assert!(
            !is_safe_relative("../etc/passwd")
                && !is_safe_relative("/abs")
                && is_safe_relative("a/b")
        );
    }
}
