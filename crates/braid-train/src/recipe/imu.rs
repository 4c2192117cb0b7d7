//! The `[data]` table of an IMU / time-series recipe: which file, how it is cut into
//! windows, which classes are kept, and how it splits into training and test sets (by
//! subject, or a separate test file as UEA archives ship).

use std::fmt;
use std::path::{Path, PathBuf};

use braid_core::{Error, Result};
use braid_data::imu::{
    read_csv, read_hapt, read_ts, sliding_windows, whole_recordings, window_batch, ChannelStats,
    CsvOptions, ImuDataset, Window, WindowConfig,
};
use serde::{Deserialize, Serialize};

use crate::classify::Examples;

/// Where the data is and how to cut it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImuData {
    /// `.npz` in the HAPT layout, UEA `.ts`, or `.csv` (a registered dataset name is
    /// resolved to its fetched file by the `braid` command).
    pub path: PathBuf,
    /// A separate test file (UEA `_TEST.ts`); without it the test set is `test_subjects`.
    #[serde(default)]
    pub test_path: Option<PathBuf>,
    /// Sliding windows (ignored for `.ts`, whose cases are already windows).
    #[serde(default)]
    pub window: WindowConfig,
    /// Keep only windows whose majority class is one of these, relabelled in this order
    /// (default: every class).
    #[serde(default)]
    pub classes: Option<Vec<String>>,
    /// Drop windows in which the majority class covers less than this share of samples.
    #[serde(default)]
    pub min_purity: f64,
    /// Subjects whose windows train (default: all but the test subjects).
    #[serde(default)]
    pub train_subjects: Option<SubjectSet>,
    /// Subjects whose windows test.
    #[serde(default)]
    pub test_subjects: Option<SubjectSet>,
    /// CSV only: the label column.
    #[serde(default)]
    pub label_column: Option<String>,
    /// CSV only: the subject column.
    #[serde(default)]
    pub subject_column: Option<String>,
}

/// Subject ids written as ranges and single ids: `"1-21"`, `"22-30"`, `"1,3,5-9"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SubjectSet {
    ranges: Vec<(u32, u32)>,
}

impl SubjectSet {
    /// Whether `id` is in the set.
    pub fn contains(&self, id: u32) -> bool {
        self.ranges.iter().any(|&(a, b)| (a..=b).contains(&id))
    }
}

impl TryFrom<String> for SubjectSet {
    type Error = String;

    fn try_from(s: String) -> std::result::Result<Self, String> {
        let num = |t: &str| {
            t.trim().parse::<u32>().map_err(|_| {
                format!("`{s}` is not a list of subject ids and ranges like \"1-21,25\"")
            })
        };
        let ranges = s
            .split(',')
            .map(|part| match part.split_once('-') {
                Some((a, b)) => Ok((num(a)?, num(b)?)),
                None => num(part).map(|v| (v, v)),
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        Ok(Self { ranges })
    }
}

impl From<SubjectSet> for String {
    fn from(s: SubjectSet) -> String {
        s.to_string()
    }
}

impl fmt::Display for SubjectSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .ranges
            .iter()
            .map(|&(a, b)| if a == b { a.to_string() } else { format!("{a}-{b}") })
            .collect();
        f.write_str(&parts.join(","))
    }
}

/// Standardised training and test examples `[n, time, channels]`.
#[derive(Debug, Clone)]
pub struct ImuSplit {
    /// Training windows.
    pub train: Examples,
    /// Test windows.
    pub test: Examples,
    /// Per-channel statistics of the training recordings (already applied).
    pub stats: ChannelStats,
    /// Class names, by label.
    pub classes: Vec<String>,
}

impl ImuData {
    /// Checks that the files exist and the settings make sense, naming the field.
    pub fn validate(&self) -> Result<()> {
        for (field, path) in
            [("data.path", Some(&self.path)), ("data.test_path", self.test_path.as_ref())]
        {
            if let Some(p) = path.filter(|p| !p.exists()) {
                return Err(Error::config(field, format!("{} does not exist", p.display())));
            }
        }
        if !(0.0..=1.0).contains(&self.min_purity) {
            return Err(Error::config(
                "data.min_purity",
                format!("must be in [0, 1], got {}", self.min_purity),
            ));
        }
        if self.test_path.is_none() && self.test_subjects.is_none() {
            return Err(Error::config(
                "data.test_subjects",
                "set test_subjects (or test_path) so that evaluation uses held-out data",
            ));
        }
        Ok(())
    }

    fn read(&self, path: &Path) -> Result<ImuDataset> {
        match path.extension().and_then(|e| e.to_str()) {
            Some("npz") => read_hapt(path),
            Some("ts") => read_ts(path),
            Some("csv") => read_csv(
                path,
                &CsvOptions {
                    label_column: self.label_column.clone(),
                    subject_column: self.subject_column.clone(),
                    ignore: vec![],
                },
            ),
            _ => Err(Error::config(
                "data.path",
                format!("{}: expected .npz (HAPT layout), .ts or .csv", path.display()),
            )),
        }
    }

    /// Windows of `ds` with the kept classes (relabelled) and enough purity.
    fn windows(&self, ds: &ImuDataset, path: &Path) -> Result<(Vec<Window>, Vec<String>)> {
        let ts = path.extension().is_some_and(|e| e == "ts");
        let all = if ts { whole_recordings(ds)? } else { sliding_windows(ds, &self.window)? };
        let names = self.classes.clone().unwrap_or_else(|| ds.classes.clone());
        let map: Vec<Option<usize>> =
            ds.classes.iter().map(|c| names.iter().position(|n| n == c)).collect();
        if let Some(missing) = names.iter().find(|n| !ds.classes.contains(n)) {
            return Err(Error::config(
                "data.classes",
                format!(
                    "`{missing}` is not a class of {} (classes: {})",
                    path.display(),
                    ds.classes.join(", ")
                ),
            ));
        }
        let len = if ts { 0 } else { self.window.length };
        let kept = all
            .into_iter()
            .filter_map(|w| {
                let label = map.get(w.label?).copied().flatten()?;
                let labels = &ds.recordings[w.recording].labels;
                let span = if ts { &labels[..] } else { &labels[w.start..w.start + len] };
                let purity = span.iter().filter(|&&l| l == w.label.map_or(-2, |k| k as i32)).count()
                    as f64
                    / span.len().max(1) as f64;
                (purity >= self.min_purity).then_some(Window { label: Some(label), ..w })
            })
            .collect();
        Ok((kept, names))
    }

    /// Reads, windows, splits and standardises with statistics of the training recordings.
    pub fn load(&self) -> Result<ImuSplit> {
        self.load_with(None)
    }

    /// As [`Self::load`], standardising with `stats` when given (a trained model's).
    pub fn load_with(&self, stats: Option<&ChannelStats>) -> Result<ImuSplit> {
        let ds = self.read(&self.path)?;
        let (windows, classes) = self.windows(&ds, &self.path)?;
        let in_set = |set: &Option<SubjectSet>, w: &Window| {
            set.as_ref().is_some_and(|s| w.subject.is_some_and(|id| s.contains(id)))
        };
        let is_test = |w: &Window| self.test_path.is_none() && in_set(&self.test_subjects, w);
        let is_train = |w: &Window| {
            !is_test(w) && (self.train_subjects.is_none() || in_set(&self.train_subjects, w))
        };
        let train_w: Vec<Window> = windows.iter().copied().filter(is_train).collect();
        let mut train_recs: Vec<usize> = train_w.iter().map(|w| w.recording).collect();
        train_recs.dedup();
        if train_w.is_empty() {
            // Before fitting statistics, which would fail on no samples without saying why.
            return Err(Error::format(
                &self.path,
                format!(
                    "training set (data.train_subjects): none of the {} windows is left after \
                     the class, purity and subject filters",
                    windows.len()
                ),
            ));
        }
        let stats = match stats {
            Some(s) => s.clone(),
            None => ChannelStats::fit(train_recs.iter().map(|&r| &ds.recordings[r]), &ds.channels)?,
        };
        let train = self.examples(&ds, &train_w, &stats, "training set (data.train_subjects)")?;
        let test = match &self.test_path {
            Some(p) => {
                let tds = self.read(p)?;
                let (w, _) = self.windows(&tds, p)?;
                self.examples(&tds, &w, &stats, "test set (data.test_path)")?
            }
            None => self.examples(
                &ds,
                &windows.iter().copied().filter(is_test).collect::<Vec<_>>(),
                &stats,
                "test set (data.test_subjects)",
            )?,
        };
        Ok(ImuSplit { train, test, stats, classes })
    }

    fn examples(
        &self,
        ds: &ImuDataset,
        windows: &[Window],
        stats: &ChannelStats,
        what: &str,
    ) -> Result<Examples> {
        if windows.is_empty() {
            return Err(Error::Invalid(format!(
                "{what}: no windows left after the class, purity and subject filters"
            )));
        }
        let len = match self.path.extension().is_some_and(|e| e == "ts") {
            true => ds.recordings[windows[0].recording].len(),
            false => self.window.length,
        };
        let x = stats.apply(&window_batch(ds, windows, len)?)?;
        Examples::new(x, windows.iter().map(|w| w.label.unwrap_or(0)).collect(), what)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn subject_sets_parse_and_print() {
        let s = SubjectSet::try_from("1-3,7".to_string()).unwrap();
        assert!(s.contains(2) && s.contains(7) && !s.contains(4));
        assert_eq!(s.to_string(), "1-3,7");
        assert!(SubjectSet::try_from("a-b".to_string()).unwrap_err().contains("a-b"));
    }

    #[test]
    fn a_csv_splits_by_subject_with_class_and_purity_filters() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.csv");
        let mut text = String::from("ax,ay,label,user\n");
        for (user, labels) in [(1, "aaaabbbb"), (2, "aaabbbbb"), (3, "bbbbcccc")] {
            for (i, l) in labels.chars().enumerate() {
                text.push_str(&format!("{},{},{l},{user}\n", i, user * 10));
            }
        }
        std::fs::write(&path, text).unwrap();
        let data = ImuData {
            path,
            test_path: None,
            window: WindowConfig { length: 4, stride: 4, drop_unlabelled: true },
            classes: Some(vec!["b".into(), "a".into()]),
            min_purity: 0.75,
            train_subjects: None,
            test_subjects: Some(SubjectSet::try_from("3".to_string()).unwrap()),
            label_column: Some("label".into()),
            subject_column: Some("user".into()),
        };
        let split = data.load().unwrap();
        // user 1: [aaaa] [bbbb]; user 2: [aaab] (purity .75) [bbbb]; user 3: [bbbb] ([cccc] dropped: class c not kept)
        assert_eq!(split.train.y, vec![1, 0, 1, 0]);
        assert_eq!(split.test.y, vec![0]);
        assert_eq!(split.classes, vec!["b", "a"]);
        assert_eq!(split.train.x.dims(), [4, 4, 2]);
        let strict = ImuData { min_purity: 1.0, ..data.clone() };
        assert_eq!(strict.load().unwrap().train.y.len(), 3);
        let e = ImuData { classes: Some(vec!["z".into()]), ..data.clone() }
            .load()
            .unwrap_err()
            .to_string();
        assert!(e.contains("data.classes") && e.contains("`z`"), "{e}");
    }

    /// Subjects that leave no training window: the error says which setting and file, not
    /// "cannot fit channel statistics on no samples".
    #[test]
    fn wrong_name_no_training_windows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.csv");
        let mut text = String::from("ax,ay,label,user\n");
        for i in 0..8 {
            text.push_str(&format!("{i},1,a,1\n"));
        }
        std::fs::write(&path, text).unwrap();
        let data = ImuData {
            path,
            test_path: None,
            window: WindowConfig { length: 4, stride: 4, drop_unlabelled: true },
            classes: None,
            min_purity: 0.75,
            train_subjects: Some(SubjectSet::try_from("7-9".to_string()).unwrap()),
            test_subjects: None,
            label_column: Some("label".into()),
            subject_column: Some("user".into()),
        };
        let e = data.load().unwrap_err().to_string();
        assert!(
            e.contains("d.csv")
                && e.contains("data.train_subjects")
                && e.contains("none of the 2 windows"),
            "{e}"
        );
    }
}
