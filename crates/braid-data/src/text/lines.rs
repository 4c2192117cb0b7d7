//! One text per line, as `braid embed text --input FILE` reads it.

use std::path::Path;

use braid_core::{Error, Result};

/// The lines of a UTF-8 file (without `\n` / `\r\n`). Blank lines inside the file are kept
/// so output rows stay aligned with input lines; a file with no non-blank line is an error.
pub fn read_lines(path: &Path) -> Result<Vec<String>> {
    if path.is_dir() {
        return Err(Error::format(path, "is a directory, not a text file"));
    }
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let lines: Vec<String> = text.lines().map(str::to_owned).collect();
    if lines.iter().all(|l| l.trim().is_empty()) {
        return Err(Error::format(path, "is empty: expected one text per line"));
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_and_directory_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.txt");
        std::fs::write(&empty, "\n  \n").unwrap();
        let err = read_lines(&empty).unwrap_err().to_string();
        assert!(err.contains("empty.txt") && err.contains("empty"), "{err}");
        let err = read_lines(dir.path()).unwrap_err().to_string();
        assert!(err.contains("directory"), "{err}");
    }

    #[test]
    fn lines_keep_blank_rows() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("t.txt");
        std::fs::write(&f, "a\r\n\nb\n").unwrap();
        assert_eq!(read_lines(&f).unwrap(), vec!["a", "", "b"]);
    }
}
