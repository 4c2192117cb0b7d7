//! The UEA/UCR `.ts` text format (Bagnall et al. 2018; reference reader
//! `aeon.datasets.load_from_ts_file`): `#` comments, `@tag value` header lines up to
//! `@data`, then one case per line, dimensions separated by `:`, values by `,`, and the
//! class label last.
//!
//! Every case must have the header's number of dimensions, all of the same length
//! (ragged dimensions are an error naming the line); cases may differ in length only when
//! `@equalLength false`. Time-stamped series and regression targets are not supported.

use std::path::Path;

use braid_core::{Error, Result};

use super::{check_finite, ImuDataset, Recording, UNLABELLED};

/// What the header promises.
#[derive(Debug, Default)]
struct Header {
    dimensions: Option<usize>,
    equal_length: bool,
    series_length: Option<usize>,
    classes: Option<Vec<String>>,
}

/// Reads a `.ts` file; each case becomes one recording whose samples all carry the case's
/// class (classes in header order).
pub fn read_ts(path: impl AsRef<Path>) -> Result<ImuDataset> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut header = Header { equal_length: true, ..Header::default() };
    let mut lines = text.lines().enumerate();
    let mut saw_data = false;
    for (i, raw) in lines.by_ref() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.eq_ignore_ascii_case("@data") {
            saw_data = true;
            break;
        }
        parse_tag(path, i + 1, line, &mut header)?;
    }
    if !saw_data {
        return Err(Error::format(path, "no @data line: not a .ts file"));
    }
    let mut ds =
        ImuDataset { classes: header.classes.clone().unwrap_or_default(), ..ImuDataset::default() };
    for (i, raw) in lines {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let rec = parse_case(path, i + 1, ds.recordings.len(), line, &mut header)?;
        ds.recordings.push(rec);
    }
    if ds.recordings.is_empty() {
        return Err(Error::format(path, "no cases after @data"));
    }
    // Every case matched @dimensions, so it is no larger than a line of the file (before
    // that check a header claiming 2^32 dimensions named 2^32 channels: 100 GB).
    let dims = header.dimensions.unwrap_or(0);
    ds.channels = (0..dims).map(|d| format!("dim{d}")).collect();
    Ok(ds)
}

fn parse_tag(path: &Path, line_no: usize, line: &str, h: &mut Header) -> Result<()> {
    let mut parts = line.split_whitespace();
    let tag = parts.next().unwrap_or("").to_ascii_lowercase();
    let rest: Vec<&str> = parts.collect();
    let value = rest.first().copied().unwrap_or("");
    let bad = |msg: String| Error::format(path, format!("line {line_no}: {msg}"));
    let flag = |v: &str| match v.to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        other => Err(bad(format!("{tag} must be true or false, got `{other}`"))),
    };
    match tag.as_str() {
        "@timestamps" if flag(value)? => {
            return Err(bad("time-stamped series are not supported".into()))
        }
        "@targetlabel" if flag(value)? => {
            return Err(bad("regression targets are not supported".into()))
        }
        "@dimensions" => {
            h.dimensions =
                Some(value.parse().map_err(|_| bad(format!("bad @dimensions `{value}`")))?)
        }
        "@equallength" => h.equal_length = flag(value)?,
        "@serieslength" => {
            h.series_length =
                Some(value.parse().map_err(|_| bad(format!("bad @seriesLength `{value}`")))?)
        }
        "@univariate" if flag(value)? => h.dimensions = h.dimensions.or(Some(1)),
        "@classlabel" if flag(value)? => {
            h.classes = Some(rest[1..].iter().map(|s| s.to_string()).collect())
        }
        _ => {}
    }
    Ok(())
}

/// One `@data` line -> a recording `[len, dims]`.
fn parse_case(
    path: &Path,
    line_no: usize,
    case: usize,
    line: &str,
    h: &mut Header,
) -> Result<Recording> {
    let bad = |msg: String| Error::format(path, format!("line {line_no} (case {case}): {msg}"));
    let mut fields: Vec<&str> = line.split(':').collect();
    let label = match &h.classes {
        Some(classes) => {
            let name = fields.pop().unwrap_or("").trim();
            match classes.iter().position(|c| c == name) {
                Some(k) => k as i32,
                None => {
                    return Err(bad(format!("class `{name}` is not in @classLabel {classes:?}")))
                }
            }
        }
        None => UNLABELLED,
    };
    let dims = *h.dimensions.get_or_insert(fields.len());
    if fields.len() != dims {
        return Err(bad(format!(
            "{} dimensions, expected {dims} (ragged dimensions)",
            fields.len()
        )));
    }
    let mut series: Vec<Vec<f32>> = Vec::with_capacity(dims);
    for (d, field) in fields.iter().enumerate() {
        if field.contains('(') {
            return Err(bad("time-stamped values are not supported".into()));
        }
        let values = field
            .split(',')
            .map(|v| match v.trim() {
                "?" => Ok(f32::NAN),
                t => t
                    .parse::<f32>()
                    .map_err(|_| bad(format!("dimension {d}: `{t}` is not a number"))),
            })
            .collect::<Result<Vec<f32>>>()?;
        if let Some(first) = series.first() {
            if values.len() != first.len() {
                return Err(bad(format!(
                    "dimension {d} has {} values but dimension 0 has {} (ragged dimensions)",
                    values.len(),
                    first.len()
                )));
            }
        }
        series.push(values);
    }
    let len = series.first().map_or(0, Vec::len);
    check_length(h, len).map_err(bad)?;
    let values: Vec<f32> = (0..len).flat_map(|t| series.iter().map(move |s| s[t])).collect();
    check_finite(path, &format!("line {line_no} (case {case})"), &values, dims)?;
    Ok(Recording { name: format!("case {case}"), values, labels: vec![label; len], subject: None })
}

fn check_length(h: &mut Header, len: usize) -> std::result::Result<(), String> {
    if !h.equal_length {
        return Ok(());
    }
    match h.series_length {
        Some(n) if n != len => Err(format!("{len} values per dimension, @seriesLength is {n}")),
        Some(_) => Ok(()),
        None => {
            h.series_length = Some(len);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "# comment\n@problemName Toy\n@timeStamps false\n@missing false\n@univariate false\n@dimensions 2\n@equalLength true\n@seriesLength 3\n@classLabel true a b\n@data\n";

    fn read(body: &str) -> Result<ImuDataset> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("toy.ts");
        std::fs::write(&path, format!("{HEADER}{body}")).unwrap();
        read_ts(&path)
    }

    #[test]
    fn reads_cases_as_time_by_channel() {
        let ds = read("1,2,3:4,5,6:b\n0.5,0.5,0.5:1,1,1:a\n").unwrap();
        assert_eq!(ds.classes, ["a", "b"]);
        assert_eq!(ds.channels.len(), 2);
        assert_eq!(ds.recordings[0].values, [1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
        assert_eq!(ds.recordings[0].labels, [1, 1, 1]);
        assert_eq!(ds.recordings[1].labels, [0, 0, 0]);
    }

    #[test]
    fn alloc_ts_dimensions_without_cases() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("huge.ts");
        std::fs::write(&path, "@dimensions 4294967296\n@seriesLength 3\n@data\n").unwrap();
        let e = read_ts(&path).unwrap_err().to_string();
        assert!(e.contains("huge.ts") && e.contains("no cases"), "{e}");
    }

    #[test]
    fn ragged_dimensions_are_an_error() {
        let e = read("1,2,3:4,5:a\n").unwrap_err().to_string();
        assert!(e.contains("line 11 (case 0): dimension 1 has 2 values but dimension 0 has 3 (ragged dimensions)"), "{e}");
        let e = read("1,2,3:a\n").unwrap_err().to_string();
        assert!(e.contains("1 dimensions, expected 2 (ragged dimensions)"), "{e}");
        let e = read("1,2:4,5:a\n").unwrap_err().to_string();
        assert!(e.contains("2 values per dimension, @seriesLength is 3"), "{e}");
    }

    #[test]
    fn missing_values_and_bad_classes_are_errors() {
        let e = read("1,?,3:4,5,6:a\n").unwrap_err().to_string();
        assert!(e.contains("value NaN at time step 1, channel 0"), "{e}");
        let e = read("1,2,3:4,5,6:c\n").unwrap_err().to_string();
        assert!(e.contains("class `c` is not in"), "{e}");
    }

    #[test]
    fn reads_basicmotions_when_fetched() {
        let Some(dir) = crate::imu::fetched_dataset("basicmotions") else { return };
        let ds = read_ts(dir.join("BasicMotions_TRAIN.ts")).unwrap();
        assert_eq!(ds.recordings.len(), 40);
        assert_eq!(ds.channels.len(), 6);
        assert_eq!(ds.classes, ["Standing", "Running", "Walking", "Badminton"]);
        assert!(ds.recordings.iter().all(|r| r.len() == 100));
    }
}
