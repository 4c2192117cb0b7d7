//! IMU recordings from CSV: a header row, then one time step per row. Every column that
//! is not the label, subject or an ignored column is a channel. Consecutive rows with the
//! same subject form one recording. Plain comma-separated values only (no quoting).

use std::collections::BTreeSet;
use std::path::Path;

use braid_core::{Error, Result};

use super::{check_finite, ImuDataset, Recording, UNLABELLED};

/// Which columns are not channels.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CsvOptions {
    /// Column holding a class name per row (an empty cell is unlabelled).
    pub label_column: Option<String>,
    /// Column holding an integer subject id per row.
    pub subject_column: Option<String>,
    /// Columns to skip (timestamps, ...).
    pub ignore: Vec<String>,
}

/// A parsed row before labels are turned into class indices.
struct Row {
    values: Vec<f32>,
    label: Option<String>,
    subject: Option<u32>,
}

/// Reads a CSV file; classes are the distinct label strings, sorted.
pub fn read_csv(path: impl AsRef<Path>, opts: &CsvOptions) -> Result<ImuDataset> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
    let (_, header) = lines.next().ok_or_else(|| Error::format(path, "empty CSV file"))?;
    let names: Vec<&str> = header.split(',').map(str::trim).collect();
    let find = |col: &Option<String>| -> Result<Option<usize>> {
        let Some(c) = col else { return Ok(None) };
        names
            .iter()
            .position(|n| n == c)
            .map(Some)
            .ok_or_else(|| Error::format(path, format!("no column `{c}` in header {names:?}")))
    };
    let (label_col, subject_col) = (find(&opts.label_column)?, find(&opts.subject_column)?);
    let channel_cols: Vec<usize> = (0..names.len())
        .filter(|&i| {
            Some(i) != label_col
                && Some(i) != subject_col
                && !opts.ignore.iter().any(|c| c == names[i])
        })
        .collect();
    let mut rows = Vec::new();
    for (i, line) in lines {
        let cells: Vec<&str> = line.split(',').map(str::trim).collect();
        let bad = |msg: String| Error::format(path, format!("line {}: {msg}", i + 1));
        if cells.len() != names.len() {
            return Err(bad(format!("{} cells, header has {}", cells.len(), names.len())));
        }
        let values = channel_cols
            .iter()
            .map(|&c| match cells[c] {
                "" => Ok(f32::NAN),
                s => s
                    .parse::<f32>()
                    .map_err(|_| bad(format!("column `{}`: `{s}` is not a number", names[c]))),
            })
            .collect::<Result<Vec<f32>>>()?;
        let label = label_col.map(|c| cells[c].to_string()).filter(|s| !s.is_empty());
        let subject = match subject_col {
            Some(c) => Some(
                cells[c]
                    .parse()
                    .map_err(|_| bad(format!("subject `{}` is not an integer", cells[c])))?,
            ),
            None => None,
        };
        rows.push(Row { values, label, subject });
    }
    let classes: Vec<String> =
        rows.iter().filter_map(|r| r.label.clone()).collect::<BTreeSet<_>>().into_iter().collect();
    let channels: Vec<String> = channel_cols.iter().map(|&c| names[c].to_string()).collect();
    let recordings = group(path, rows, &classes, channels.len())?;
    Ok(ImuDataset { recordings, channels, classes })
}

/// Consecutive rows of one subject -> one recording.
fn group(
    path: &Path,
    rows: Vec<Row>,
    classes: &[String],
    channels: usize,
) -> Result<Vec<Recording>> {
    let mut out: Vec<Recording> = Vec::new();
    for row in rows {
        let label = row
            .label
            .and_then(|l| classes.iter().position(|c| *c == l))
            .map_or(UNLABELLED, |k| k as i32);
        match out.last_mut() {
            Some(rec) if rec.subject == row.subject => {
                rec.values.extend(row.values);
                rec.labels.push(label);
            }
            _ => {
                let name = match row.subject {
                    Some(s) => format!("subject {s} (recording {})", out.len()),
                    None => format!("recording {}", out.len()),
                };
                out.push(Recording {
                    name,
                    values: row.values,
                    labels: vec![label],
                    subject: row.subject,
                });
            }
        }
    }
    for rec in &out {
        check_finite(path, &rec.name, &rec.values, channels)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(body: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.csv");
        std::fs::write(&path, body).unwrap();
        (dir, path)
    }

    fn opts() -> CsvOptions {
        CsvOptions {
            label_column: Some("activity".into()),
            subject_column: Some("user".into()),
            ignore: vec!["t".into()],
        }
    }

    #[test]
    fn splits_recordings_by_subject() {
        let (_d, path) = write("t,ax,ay,activity,user\n0,1,2,walk,1\n1,3,4,,1\n2,5,6,sit,2\n");
        let ds = read_csv(&path, &opts()).unwrap();
        assert_eq!(ds.channels, ["ax", "ay"]);
        assert_eq!(ds.classes, ["sit", "walk"]);
        assert_eq!(ds.recordings.len(), 2);
        assert_eq!(ds.recordings[0].values, [1.0, 2.0, 3.0, 4.0]);
        assert_eq!(ds.recordings[0].labels, [1, UNLABELLED]);
        assert_eq!(ds.recordings[1].subject, Some(2));
    }

    #[test]
    fn nan_and_bad_cells_are_errors() {
        let (_d, path) = write("t,ax,ay,activity,user\n0,1,nan,walk,1\n");
        let e = read_csv(&path, &opts()).unwrap_err().to_string();
        assert!(e.contains("value NaN at time step 0, channel 1"), "{e}");
        let (_d, path) = write("t,ax,ay,activity,user\n0,1,x,walk,1\n");
        let e = read_csv(&path, &opts()).unwrap_err().to_string();
        assert!(e.contains("line 2: column `ay`: `x` is not a number"), "{e}");
        let (_d, path) = write("t,ax\n0,1\n");
        assert!(read_csv(&path, &opts()).unwrap_err().to_string().contains("no column `activity`"));
    }
}
