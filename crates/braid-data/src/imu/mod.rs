//! IMU and other multichannel time series: readers for UEA/UCR `.ts` (Bagnall et al.,
//! "The UEA multivariate time series classification archive", 2018; format as read by
//! `aeon.datasets.load_from_ts_file`), HAPT `.npz` recordings (Reyes-Ortiz et al. 2016)
//! and CSV; sliding windows with majority labels; per-channel standardisation.
//!
//! Every reader returns an [`ImuDataset`]: recordings of `[time, channels]` samples with
//! a class index per sample (`-1` = unlabelled) and an optional subject id. Non-finite
//! values (NaN, inf, the `.ts` missing marker `?`) are rejected with the file, row and
//! channel: no reader silently imputes.

mod csv;
mod dataset;
mod hapt;
mod standardize;
mod stats;
mod ts;
mod window;

pub use csv::{read_csv, CsvOptions};
pub use dataset::{check_finite, ImuDataset, Recording, UNLABELLED};
pub use hapt::{read_hapt, HAPT_CHANNELS, HAPT_CLASSES};
pub use standardize::{ChannelStats, STATS_FILE};
pub use stats::WindowStats;
pub use ts::read_ts;
pub use window::{sliding_windows, whole_recordings, window_batch, Window, WindowConfig};

/// The fetched dataset folder `$BRAID_HOME/datasets/NAME`, or `None` with a note when it
/// is absent and `BRAID_REQUIRE_ASSETS` is not 1.
#[cfg(test)]
pub(crate) fn fetched_dataset(name: &str) -> Option<std::path::PathBuf> {
    use std::path::PathBuf;
    let home = std::env::var_os("BRAID_HOME").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/braid")
    });
    let dir = home.join("datasets").join(name);
    if dir.join(".braid-fetched.json").exists() {
        return Some(dir);
    }
    assert!(
        std::env::var("BRAID_REQUIRE_ASSETS").as_deref() != Ok("1"),
        "BRAID_REQUIRE_ASSETS=1 but {} is missing; run `braid fetch {name}`",
        dir.display()
    );
    eprintln!("note: skipping: {} is missing (run `braid fetch {name}`)", dir.display());
    None
}
