//! Counts of windows per class and per subject, as `braid data stats` prints them.

use std::collections::BTreeMap;
use std::fmt;

use super::{ImuDataset, Window};

/// How windows spread over classes and subjects.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WindowStats {
    /// Total windows.
    pub windows: usize,
    /// Windows per class name (`unlabelled` for windows without a majority class).
    pub per_class: BTreeMap<String, usize>,
    /// Windows per subject id (`None` when the source has no subjects).
    pub per_subject: BTreeMap<Option<u32>, usize>,
}

impl WindowStats {
    /// Counts `windows` of `ds`.
    pub fn new(ds: &ImuDataset, windows: &[Window]) -> Self {
        let mut s = Self { windows: windows.len(), ..Self::default() };
        for w in windows {
            let class =
                w.label.and_then(|k| ds.classes.get(k)).map_or("unlabelled", String::as_str);
            *s.per_class.entry(class.to_string()).or_default() += 1;
            *s.per_subject.entry(w.subject).or_default() += 1;
        }
        s
    }
}

impl fmt::Display for WindowStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} windows", self.windows)?;
        writeln!(f, "per class:")?;
        let width = self.per_class.keys().map(String::len).max().unwrap_or(0);
        for (class, n) in &self.per_class {
            writeln!(f, "  {class:<width$}  {n:>7}")?;
        }
        writeln!(f, "per subject:")?;
        for (subject, n) in &self.per_subject {
            match subject {
                Some(s) => writeln!(f, "  {s:>4}  {n:>7}")?,
                None => writeln!(f, "  (no subject ids)  {n:>7}")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_class_and_subject() {
        let ds = ImuDataset { classes: vec!["walk".into(), "sit".into()], ..ImuDataset::default() };
        let w = |label, subject| Window { recording: 0, start: 0, label, subject };
        let s =
            WindowStats::new(&ds, &[w(Some(0), Some(1)), w(Some(1), Some(1)), w(None, Some(2))]);
        assert_eq!(s.per_class["walk"], 1);
        assert_eq!(s.per_class["unlabelled"], 1);
        assert_eq!(s.per_subject[&Some(1)], 2);
        let text = s.to_string();
        assert!(text.starts_with("3 windows\nper class:\n  sit               1\n"), "{text}");
    }
}
