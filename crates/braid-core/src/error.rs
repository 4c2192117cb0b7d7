//! One error type for every library crate. Each variant names what was wrong: the file,
//! the config field, the tensor and its shapes, the registry name.

use std::path::PathBuf;

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in Braid's libraries.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A file exists but its contents are not what its format promises.
    #[error("{}: {msg}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What was wrong, in words.
        msg: String,
    },
    /// A configuration value is missing, unknown or out of range.
    #[error("config field `{field}`: {msg}")]
    Config {
        /// Dotted path of the field (`vision.patch_size`).
        field: String,
        /// What was wrong.
        msg: String,
    },
    /// A tensor has the wrong shape.
    #[error("{name}: expected shape {expected:?}, got {got:?}")]
    Shape {
        /// Tensor or argument name.
        name: String,
        /// Expected dims.
        expected: Vec<usize>,
        /// Actual dims.
        got: Vec<usize>,
    },
    /// A name is not in a registry (model, dataset, projector kind, ...).
    #[error("unknown {kind} `{name}`; known: {}", known.join(", "))]
    Unknown {
        /// What kind of name (`model or dataset`, `projector kind`).
        kind: String,
        /// The name given.
        name: String,
        /// The names that exist.
        known: Vec<String>,
    },
    /// A checkpoint does not fit the module it is loaded into.
    #[error("{}: {summary}", path.display())]
    Load {
        /// The checkpoint.
        path: PathBuf,
        /// One-line summary of missing, unexpected and mismatched tensors.
        summary: String,
    },
    /// A network transfer failed.
    #[error("{url}: {msg}")]
    Network {
        /// What was being fetched.
        url: String,
        /// Why it failed.
        msg: String,
    },
    /// A downloaded file does not match its pinned digest.
    #[error("{}: sha256 {got} does not match the pinned {expected}", path.display())]
    Checksum {
        /// The file.
        path: PathBuf,
        /// Pinned digest.
        expected: String,
        /// Actual digest.
        got: String,
    },
    /// An input the caller gave is invalid (empty dataset, bad argument, ...).
    #[error("{0}")]
    Invalid(String),
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

impl Error {
    /// An [`Error::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io { path: path.into(), source }
    }

    /// An [`Error::Format`] for `path`.
    pub fn format(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        Self::Format { path: path.into(), msg: msg.into() }
    }

    /// An [`Error::Config`] for `field`.
    pub fn config(field: impl Into<String>, msg: impl Into<String>) -> Self {
        Self::Config { field: field.into(), msg: msg.into() }
    }

    /// An [`Error::Shape`].
    pub fn shape(name: impl Into<String>, expected: &[usize], got: &[usize]) -> Self {
        Self::Shape { name: name.into(), expected: expected.to_vec(), got: got.to_vec() }
    }

    /// An [`Error::Unknown`], listing the names that exist.
    pub fn unknown<S: AsRef<str>>(
        kind: &str,
        name: &str,
        known: impl IntoIterator<Item = S>,
    ) -> Self {
        Self::Unknown {
            kind: kind.to_string(),
            name: name.to_string(),
            known: known.into_iter().map(|s| s.as_ref().to_string()).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_what_was_wrong() {
        let e = Error::shape("encoder.layer.0.weight", &[4, 8], &[4, 7]);
        assert_eq!(e.to_string(), "encoder.layer.0.weight: expected shape [4, 8], got [4, 7]");
        let e = Error::unknown("model or dataset", "minilmm", ["minilm", "smollm2"]);
        assert_eq!(e.to_string(), "unknown model or dataset `minilmm`; known: minilm, smollm2");
        let e = Error::format("/tmp/x.gguf", "bad magic");
        assert_eq!(e.to_string(), "/tmp/x.gguf: bad magic");
    }
}
