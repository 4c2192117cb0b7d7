//! Entries that come from Debian packages (Fashion-MNIST): Braid does not install system
//! packages; it reports the files when present and otherwise prints the apt command.

use std::path::Path;

use braid_core::{Error, Result};

use crate::entry::{Entry, Source};
use crate::options::Fetched;

/// The installed files of a Debian-sourced entry, or an error saying how to install them.
pub(crate) fn check(entry: &Entry) -> Result<Fetched> {
    let Source::Debian { package, dir } = entry.source else {
        return Err(Error::Invalid(format!("{} is not a Debian entry", entry.name)));
    };
    let files: Vec<_> = entry.members.iter().map(|m| Path::new(dir).join(m.to)).collect();
    if files.iter().all(|f| f.is_file()) {
        let dir = Path::new(dir).to_path_buf();
        return Ok(Fetched {
            name: entry.name.into(),
            main: dir.clone(),
            dir,
            files,
            downloaded: false,
        });
    }
    Err(Error::Invalid(format!(
        "{} comes from a Debian package: run `sudo apt-get install {package}`, which installs it in {dir}",
        entry.name
    )))
}
