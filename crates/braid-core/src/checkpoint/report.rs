//! What happened when a checkpoint was loaded into a module: every missing, unexpected
//! and wrongly shaped tensor by name, so that all problems show at once.

use std::fmt;
use std::path::Path;

use crate::{Error, Result};

/// How many names of each kind an error message lists before "...".
const NAMES_SHOWN: usize = 3;

/// The outcome of loading a checkpoint through a tracking var builder.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoadReport {
    /// Tensors the module asked for that the checkpoint lacks.
    pub missing: Vec<String>,
    /// Checkpoint tensors the module never asked for.
    pub unexpected: Vec<String>,
    /// Tensors present with another shape: (name, expected by the module, in the file).
    pub mismatched: Vec<(String, Vec<usize>, Vec<usize>)>,
    /// Checkpoint tensors loaded into the module.
    pub used: usize,
    /// Elements in the loaded tensors.
    pub total_params: usize,
}

impl LoadReport {
    /// True when nothing is missing, unexpected or mismatched.
    pub fn is_clean(&self) -> bool {
        self.missing.is_empty() && self.unexpected.is_empty() && self.mismatched.is_empty()
    }

    /// `Ok(self)` when clean, otherwise an [`Error::Load`] for `path` naming the first
    /// few offending tensors of each kind.
    pub fn into_result(self, path: impl AsRef<Path>) -> Result<LoadReport> {
        if self.is_clean() {
            return Ok(self);
        }
        let mut parts = Vec::new();
        if !self.missing.is_empty() {
            parts.push(format!("{} missing ({})", self.missing.len(), first_few(&self.missing)));
        }
        if !self.unexpected.is_empty() {
            parts.push(format!(
                "{} unexpected ({})",
                self.unexpected.len(),
                first_few(&self.unexpected)
            ));
        }
        if !self.mismatched.is_empty() {
            let shown: Vec<String> = self
                .mismatched
                .iter()
                .map(|(n, want, got)| format!("{n}: expected {want:?}, file has {got:?}"))
                .collect();
            parts.push(format!("{} mismatched ({})", shown.len(), first_few(&shown)));
        }
        Err(Error::Load { path: path.as_ref().to_path_buf(), summary: parts.join("; ") })
    }
}

fn first_few(names: &[String]) -> String {
    let mut s = names.iter().take(NAMES_SHOWN).cloned().collect::<Vec<_>>().join(", ");
    if names.len() > NAMES_SHOWN {
        s.push_str(&format!(", ... {} more", names.len() - NAMES_SHOWN));
    }
    s
}

/// `22.7M`, `1.3B`, `512`.
fn human_count(n: usize) -> String {
    let x = n as f64;
    match n {
        0..=999 => n.to_string(),
        1_000..=999_999 => format!("{:.1}K", x / 1e3),
        1_000_000..=999_999_999 => format!("{:.1}M", x / 1e6),
        _ => format!("{:.1}B", x / 1e9),
    }
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} missing, {} unexpected, {} mismatched; {} tensors, {} parameters",
            self.missing.len(),
            self.unexpected.len(),
            self.mismatched.len(),
            self.used,
            human_count(self.total_params)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_and_error_name_the_tensors() {
        let clean = LoadReport { used: 101, total_params: 22_700_000, ..Default::default() };
        assert_eq!(
            clean.to_string(),
            "0 missing, 0 unexpected, 0 mismatched; 101 tensors, 22.7M parameters"
        );
        assert!(clean.into_result("m.safetensors").is_ok());
        let bad = LoadReport {
            missing: (0..5).map(|i| format!("layer.{i}.weight")).collect(),
            unexpected: vec!["extra".into()],
            mismatched: vec![("fc.weight".into(), vec![4, 8], vec![4, 7])],
            used: 3,
            total_params: 42,
        };
        let msg =
            bad.into_result("/m/x.safetensors").err().map(|e| e.to_string()).unwrap_or_default();
        assert_eq!(
            msg,
            "/m/x.safetensors: 5 missing (layer.0.weight, layer.1.weight, layer.2.weight, ... 2 more); \
             1 unexpected (extra); 1 mismatched (fc.weight: expected [4, 8], file has [4, 7])"
        );
    }
}
