//! `braid data stats NAME`: how an IMU / time-series dataset splits into windows, per
//! class and per subject.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use braid_data::imu::{
    read_csv, read_hapt, read_ts, sliding_windows, whole_recordings, CsvOptions, ImuDataset,
    WindowConfig, WindowStats,
};

/// Flags of `braid data`.
#[derive(Debug, clap::Args)]
pub struct DataArgs {
    #[command(subcommand)]
    pub what: DataWhat,
}

/// Dataset commands.
#[derive(Debug, clap::Subcommand)]
pub enum DataWhat {
    /// Windows per class and per subject of a dataset (hapt, basicmotions, japanesevowels,
    /// or a .ts / .npz / .csv file or folder of .ts files).
    Stats(StatsArgs),
}

/// Flags of `braid data stats`.
#[derive(Debug, clap::Args)]
pub struct StatsArgs {
    /// Registered dataset name or path.
    pub name: String,
    /// Window length in samples (default: 128 for recordings; whole cases for .ts).
    #[arg(long)]
    pub window: Option<usize>,
    /// Samples between window starts (default: half the window).
    #[arg(long)]
    pub stride: Option<usize>,
    /// Count windows whose majority is unlabelled too.
    #[arg(long)]
    pub keep_unlabelled: bool,
    /// CSV: the class-label column.
    #[arg(long)]
    pub label_column: Option<String>,
    /// CSV: the subject-id column.
    #[arg(long)]
    pub subject_column: Option<String>,
}

/// Runs `braid data`.
pub fn run(args: &DataArgs) -> anyhow::Result<()> {
    match &args.what {
        DataWhat::Stats(a) => stats(a),
    }
}

fn stats(a: &StatsArgs) -> anyhow::Result<()> {
    let path = dataset_path(&a.name)?;
    for (label, ds) in load(&path, a)? {
        let windows = match (a.window, is_ts(&path)) {
            (None, true) => whole_recordings(&ds)?,
            (w, _) => {
                let length = w.unwrap_or(128);
                let cfg = WindowConfig {
                    length,
                    stride: a.stride.unwrap_or(length / 2).max(1),
                    drop_unlabelled: !a.keep_unlabelled,
                };
                sliding_windows(&ds, &cfg)?
            }
        };
        println!("== {label}: {} recordings, {} channels", ds.recordings.len(), ds.num_channels());
        print!("{}", WindowStats::new(&ds, &windows));
    }
    Ok(())
}

fn is_ts(path: &Path) -> bool {
    path.is_dir() || path.extension().is_some_and(|e| e == "ts")
}

/// A registered dataset's folder (fetched) or the path given.
pub(crate) fn dataset_path(name: &str) -> anyhow::Result<PathBuf> {
    let p = PathBuf::from(name);
    if p.exists() {
        return Ok(p);
    }
    let entry = braid_hub::find(name)?;
    let home = braid_hub::home();
    if !braid_hub::is_fetched(entry, &home) {
        bail!("dataset `{name}` is not fetched; run `braid fetch {name}`");
    }
    Ok(braid_hub::entry_dir(entry, &home).join(entry.main))
}

/// (label, dataset) per file: every `.ts` of a folder, or the one file.
fn load(path: &Path, a: &StatsArgs) -> anyhow::Result<Vec<(String, ImuDataset)>> {
    let name = |p: &Path| {
        p.file_name().map_or_else(|| p.display().to_string(), |n| n.to_string_lossy().into_owned())
    };
    if path.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .with_context(|| path.display().to_string())?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "ts"))
            .collect();
        files.sort();
        if files.is_empty() {
            bail!("{}: no .ts files", path.display());
        }
        return files.iter().map(|f| Ok((name(f), read_ts(f)?))).collect();
    }
    let ds = read_dataset(path, a.label_column.clone(), a.subject_column.clone())?;
    Ok(vec![(name(path), ds)])
}

/// One `.ts`, `.npz` (HAPT layout) or `.csv` file (CSV: label and subject columns).
pub(crate) fn read_dataset(
    path: &Path,
    label: Option<String>,
    subject: Option<String>,
) -> anyhow::Result<ImuDataset> {
    Ok(match path.extension().and_then(|e| e.to_str()) {
        Some("ts") => read_ts(path)?,
        Some("npz") => read_hapt(path)?,
        Some("csv") => read_csv(
            path,
            &CsvOptions { label_column: label, subject_column: subject, ignore: vec![] },
        )?,
        _ => bail!("{}: expected a .ts, .npz (HAPT layout) or .csv file", path.display()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_of_a_csv_and_a_missing_dataset() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.csv");
        std::fs::write(&path, "ax,ay,label,user\n1,2,walk,1\n3,4,walk,1\n5,6,sit,2\n7,8,sit,2\n")
            .unwrap();
        let args = |name: String| StatsArgs {
            name,
            window: Some(2),
            stride: None,
            keep_unlabelled: false,
            label_column: Some("label".into()),
            subject_column: Some("user".into()),
        };
        let a = args(path.display().to_string());
        let (_, ds) = load(&path, &a).unwrap().remove(0);
        assert_eq!(ds.recordings.len(), 2);
        stats(&a).unwrap();
        let e = stats(&args("no-such-dataset".into())).unwrap_err().to_string();
        assert!(e.contains("unknown model or dataset `no-such-dataset`"), "{e}");
    }
}
