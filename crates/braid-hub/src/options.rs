//! Settings of a fetch and what it returns; `$BRAID_HOME` resolution.

use std::path::PathBuf;

/// The cache root: `$BRAID_HOME`, else `~/.cache/braid` (`$XDG_CACHE_HOME/braid` when set).
pub fn home() -> PathBuf {
    if let Some(h) = std::env::var_os("BRAID_HOME").filter(|h| !h.is_empty()) {
        return PathBuf::from(h);
    }
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|h| !h.is_empty()) {
        return PathBuf::from(x).join("braid");
    }
    let user = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
    user.join(".cache").join("braid")
}

/// How to fetch.
#[derive(Debug, Clone, Default)]
pub struct FetchOptions {
    /// Cache root; `None` means [`home()`].
    pub home: Option<PathBuf>,
    /// Reinstall even if a verified copy is present.
    pub force: bool,
    /// No progress bars.
    pub quiet: bool,
    /// Keep the downloaded archive in `<home>/downloads` after installing.
    pub keep_archive: bool,
    /// PyPI Simple index; `None`: `$BRAID_PYPI_URL`, else <https://pypi.org/simple>.
    pub pypi_url: Option<String>,
    /// npm registry; `None`: `$BRAID_NPM_URL`, else <https://registry.npmjs.org>.
    pub npm_url: Option<String>,
    /// Hugging Face hub; `None`: `$BRAID_HF_URL`, else <https://huggingface.co>.
    pub hf_url: Option<String>,
}

impl FetchOptions {
    /// The cache root these options use.
    pub fn home(&self) -> PathBuf {
        self.home.clone().unwrap_or_else(home)
    }
}

/// What a fetch installed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// Registry name (or `hf:ORG/NAME`).
    pub name: String,
    /// The entry's folder.
    pub dir: PathBuf,
    /// The file that stands for the entry (the GGUF, the npz), or `dir`.
    pub main: PathBuf,
    /// Every installed file.
    pub files: Vec<PathBuf>,
    /// False if a verified copy was already there and nothing was downloaded.
    pub downloaded: bool,
}
