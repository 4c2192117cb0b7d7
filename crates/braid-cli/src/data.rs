//! `braid data stats NAME`: how an IMU / time-series dataset splits into windows, per
//! class and per subject. `braid data make KIND --out DIR`: a conversation dataset that
//! Braid makes itself ([`braid_data::make`]).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use braid_data::fusion::FusionDataset;
use braid_data::imu::{
    read_csv, read_hapt, read_ts, sliding_windows, whole_recordings, CsvOptions, ImuDataset,
    WindowConfig, WindowStats,
};
use braid_data::make::av_digits::{make_av_digits, AvDigitsOptions};
use braid_data::make::easy_vqa::make_easy_vqa;
use braid_data::make::hapt_chat::{make_hapt_chat, HaptChatOptions};
use braid_data::make::hapt_fusion::{make_hapt_fusion, HaptFusionOptions};
use braid_data::make::image_folder::{
    make_fashion_mnist, make_shapes_shift, FolderOptions, MadeFolder,
};
use braid_data::make::spoken_digits::{make_spoken_digits, SpokenDigitsOptions};

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
    /// Writes a conversation dataset (train.json, test.json, captions_train.json,
    /// captions_test.json and the media) into --out: hapt-chat (questions about HAPT IMU
    /// windows; needs `braid fetch hapt`), spoken-digits (digits said by espeak-ng voices,
    /// noised by sox) or easy-vqa (the fetched easy-VQA in this layout; images not copied);
    /// or a fusion dataset (fusion.json, train.safetensors, test.safetensors): hapt-fusion
    /// (HAPT windows as acc and gyro inputs) or av-digits (AV-MNIST-style degraded MNIST
    /// images paired with noised spoken digits; needs `braid fetch mnist`, espeak-ng, sox);
    /// or an image-classification folder for `braid adapt`: fashion-mnist, shapes-shift.
    Make(MakeArgs),
}

/// Flags of `braid data make`.
#[derive(Debug, clap::Args)]
pub struct MakeArgs {
    /// What to make: hapt-chat, spoken-digits, easy-vqa, hapt-fusion, av-digits, or an
    /// image-classification folder (train/val/test/<class>/*.png) for `braid adapt`:
    /// fashion-mnist (needs `sudo apt-get install dataset-fashion-mnist`) or shapes-shift.
    pub kind: String,
    /// The folder to write; absent or empty unless --force.
    #[arg(long)]
    pub out: PathBuf,
    /// Chooses the phrasings (and for spoken-digits the voices, speeds, pitches and noise).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Write over the dataset in a folder that is not empty (conversation datasets: other
    /// files are kept; fusion datasets: the folder, which must hold one, is replaced).
    #[arg(long)]
    pub force: bool,
    /// hapt-chat, hapt-fusion: samples per window [default: 128].
    #[arg(long)]
    pub window: Option<usize>,
    /// hapt-chat, hapt-fusion: samples between window starts [default: 64].
    #[arg(long)]
    pub stride: Option<usize>,
    /// hapt-chat, hapt-fusion: the HAPT recordings, a registered name or an .npz path
    /// [default: hapt].
    #[arg(long)]
    pub hapt: Option<String>,
    /// spoken-digits, av-digits: training clips [default: 2000]; fashion-mnist,
    /// shapes-shift: training images per class [default: 64].
    #[arg(long)]
    pub train: Option<usize>,
    /// spoken-digits, av-digits: test clips [default: 300; av-digits 500]; fashion-mnist,
    /// shapes-shift: test images per class [default: 100].
    #[arg(long)]
    pub test: Option<usize>,
    /// fashion-mnist, shapes-shift: validation images per class [default: 16].
    #[arg(long)]
    pub val: Option<usize>,
    /// spoken-digits, av-digits: clips made at once [default: one per core].
    #[arg(long)]
    pub jobs: Option<usize>,
    /// av-digits: MNIST images of each digit, before the 80/20 split [default: all].
    #[arg(long)]
    pub per_digit: Option<usize>,
    /// av-digits: the spoken-digits dataset whose clips are paired; made there first when
    /// the folder holds none [default: made in a temporary folder beside --out].
    #[arg(long)]
    pub audio: Option<PathBuf>,
    /// av-digits: signal-to-noise ratio in dB of the white noise added to each clip
    /// [default: -6].
    #[arg(long, allow_negative_numbers = true)]
    pub snr: Option<f64>,
}

/// `braid data make`'s flags resolved for one kind.
#[derive(Debug, PartialEq)]
enum Make {
    HaptChat { hapt: String, options: HaptChatOptions },
    SpokenDigits(SpokenDigitsOptions),
    EasyVqa,
    HaptFusion { hapt: String, options: HaptFusionOptions },
    AvDigits { audio: Option<PathBuf>, clips: SpokenDigitsOptions, options: AvDigitsOptions },
    FashionMnist(FolderOptions),
    ShapesShift(FolderOptions),
}

/// The kinds that take each optional flag.
const HAPT_KINDS: &[&str] = &["hapt-chat", "hapt-fusion"];
const SPOKEN_KINDS: &[&str] = &["spoken-digits", "av-digits"];
const COUNT_KINDS: &[&str] = &["spoken-digits", "av-digits", "fashion-mnist", "shapes-shift"];
const FOLDER_KINDS: &[&str] = &["fashion-mnist", "shapes-shift"];
const AV_KINDS: &[&str] = &["av-digits"];

impl Make {
    fn from_args(a: &MakeArgs) -> anyhow::Result<Self> {
        let flags = [
            ("--window", a.window.is_some(), HAPT_KINDS),
            ("--stride", a.stride.is_some(), HAPT_KINDS),
            ("--hapt", a.hapt.is_some(), HAPT_KINDS),
            ("--train", a.train.is_some(), COUNT_KINDS),
            ("--test", a.test.is_some(), COUNT_KINDS),
            ("--val", a.val.is_some(), FOLDER_KINDS),
            ("--jobs", a.jobs.is_some(), SPOKEN_KINDS),
            ("--per-digit", a.per_digit.is_some(), AV_KINDS),
            ("--audio", a.audio.is_some(), AV_KINDS),
            ("--snr", a.snr.is_some(), AV_KINDS),
        ];
        let known = braid_data::make::KINDS.contains(&a.kind.as_str());
        if let Some((flag, _, kinds)) =
            flags.iter().find(|(_, set, kinds)| known && *set && !kinds.contains(&a.kind.as_str()))
        {
            bail!("{flag} applies to `braid data make {}`, not {}", kinds.join("` and `"), a.kind);
        }
        let hapt = || a.hapt.clone().unwrap_or_else(|| "hapt".into());
        // A window given alone is strided by half of itself.
        let stride = |window: usize, default: usize| {
            a.stride.unwrap_or(if a.window.is_some() { (window / 2).max(1) } else { default })
        };
        let d = SpokenDigitsOptions::default();
        let clips = |test: usize| SpokenDigitsOptions {
            train: a.train.unwrap_or(d.train),
            test: a.test.unwrap_or(test),
            seed: a.seed,
            jobs: a.jobs.unwrap_or(d.jobs),
            force: a.force,
        };
        match a.kind.as_str() {
            "hapt-chat" => {
                let d = HaptChatOptions::default();
                let window = a.window.unwrap_or(d.window);
                let stride = stride(window, d.stride);
                let options = HaptChatOptions { window, stride, seed: a.seed, force: a.force };
                Ok(Self::HaptChat { hapt: hapt(), options })
            }
            "spoken-digits" => Ok(Self::SpokenDigits(clips(d.test))),
            "easy-vqa" => Ok(Self::EasyVqa),
            "hapt-fusion" => {
                let d = HaptFusionOptions::default();
                let window = a.window.unwrap_or(d.window);
                let options =
                    HaptFusionOptions { window, stride: stride(window, d.stride), force: a.force };
                Ok(Self::HaptFusion { hapt: hapt(), options })
            }
            "av-digits" => {
                let d = AvDigitsOptions::default();
                let options = AvDigitsOptions {
                    per_digit: a.per_digit,
                    snr_db: a.snr.unwrap_or(d.snr_db),
                    seed: a.seed,
                    jobs: a.jobs.unwrap_or(d.jobs),
                    force: a.force,
                    ..d
                };
                // The audio folder is the user's: it is never written over.
                let clips = SpokenDigitsOptions { force: false, ..clips(500) };
                Ok(Self::AvDigits { audio: a.audio.clone(), clips, options })
            }
            "fashion-mnist" | "shapes-shift" => {
                let d = FolderOptions::default();
                let options = FolderOptions {
                    train: a.train.unwrap_or(d.train),
                    val: a.val.unwrap_or(d.val),
                    test: a.test.unwrap_or(d.test),
                    seed: a.seed,
                    force: a.force,
                };
                Ok(if a.kind == "fashion-mnist" {
                    Self::FashionMnist(options)
                } else {
                    Self::ShapesShift(options)
                })
            }
            other => {
                Err(braid_core::Error::unknown("dataset kind", other, braid_data::make::KINDS)
                    .into())
            }
        }
    }
}

fn make(a: &MakeArgs) -> anyhow::Result<()> {
    let start = std::time::Instant::now();
    let made = match Make::from_args(a)? {
        Make::HaptChat { hapt, options } => {
            let ds = read_hapt(&dataset_path(&hapt)?)?;
            make_hapt_chat(&ds, &a.out, &options)?
        }
        Make::SpokenDigits(options) => make_spoken_digits(&a.out, &options)?,
        Make::EasyVqa => make_easy_vqa(&dataset_path("easy-vqa")?, &a.out, a.force)?,
        Make::FashionMnist(o) => {
            let made = make_fashion_mnist(&dataset_path("fashion-mnist")?, &a.out, &o)?;
            return report_folder(&made, start);
        }
        Make::ShapesShift(o) => return report_folder(&make_shapes_shift(&a.out, &o)?, start),
        Make::HaptFusion { hapt, options } => {
            let ds = read_hapt(&dataset_path(&hapt)?)?;
            let made = make_hapt_fusion(&ds, &a.out, &options)?;
            return report_fusion(a, &made, start);
        }
        Make::AvDigits { audio, clips, options } => {
            let mnist = dataset_path("mnist")?;
            let made = with_clips(audio, &a.out, &clips, |dir| {
                println!("pairing MNIST with the clips of {} ...", dir.display());
                Ok(make_av_digits(&mnist, dir, &a.out, &options)?)
            })?;
            return report_fusion(a, &made, start);
        }
    };
    println!("made {} in {:.1} s: {made}", a.kind, start.elapsed().as_secs_f64());
    Ok(())
}

/// Runs `f` on a spoken-digits dataset: `audio` when it holds one, else one made there
/// (kept), or without `audio` in a folder beside `out` (removed afterwards).
fn with_clips<T>(
    audio: Option<PathBuf>,
    out: &Path,
    clips: &SpokenDigitsOptions,
    f: impl FnOnce(&Path) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let temporary = audio.is_none();
    let dir = audio.unwrap_or_else(|| {
        let mut name = out.as_os_str().to_os_string();
        name.push(".clips-tmp");
        PathBuf::from(name)
    });
    if temporary && dir.exists() {
        // A failed run's leftover: ours to remove.
        std::fs::remove_dir_all(&dir).with_context(|| dir.display().to_string())?;
    }
    if !dir.join(braid_data::make::TRAIN_FILE).exists() {
        let t = std::time::Instant::now();
        println!(
            "synthesising {} training and {} test clips into {} ...",
            clips.train,
            clips.test,
            dir.display()
        );
        let made = make_spoken_digits(&dir, clips)?;
        println!("made the clips in {:.1} s: {made}", t.elapsed().as_secs_f64());
    }
    let result = f(&dir);
    if temporary {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

/// The final line of a fusion maker, then each split's samples per class.
fn report_folder(made: &MadeFolder, start: std::time::Instant) -> anyhow::Result<()> {
    let [train, val, test] = made.images;
    println!(
        "made {} in {:.1} s: {} classes; {train} training, {val} validation, {test} test images",
        made.dir.display(),
        start.elapsed().as_secs_f64(),
        made.classes
    );
    Ok(())
}

fn report_fusion(
    a: &MakeArgs,
    ds: &FusionDataset,
    start: std::time::Instant,
) -> anyhow::Result<()> {
    let secs = start.elapsed().as_secs_f64();
    println!("made {} in {secs:.1} s: {}: {ds}", a.kind, a.out.display());
    let classes = &ds.meta.classes;
    for (name, split) in [("train", &ds.train), ("test", &ds.test)] {
        let counts = split.class_counts(classes.len());
        let per: Vec<String> =
            classes.iter().zip(counts).map(|(c, n)| format!("{c} {n}")).collect();
        println!("  {name} per class: {}", per.join(", "));
    }
    Ok(())
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
        DataWhat::Make(a) => make(a),
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

    fn make_args(kind: &str) -> MakeArgs {
        MakeArgs {
            kind: kind.into(),
            out: "out".into(),
            seed: 3,
            force: false,
            window: None,
            stride: None,
            hapt: None,
            train: None,
            test: None,
            val: None,
            jobs: None,
            per_digit: None,
            audio: None,
            snr: None,
        }
    }

    #[test]
    fn make_flags_resolve_per_kind() {
        let e = Make::from_args(&make_args("mnist-chat")).unwrap_err().to_string();
        assert_eq!(
            e,
            "unknown dataset kind `mnist-chat`; known: hapt-chat, spoken-digits, easy-vqa, \
             hapt-fusion, av-digits, fashion-mnist, shapes-shift"
        );
        let hapt = Make::from_args(&MakeArgs { window: Some(100), ..make_args("hapt-chat") });
        let want = HaptChatOptions { window: 100, stride: 50, seed: 3, force: false };
        assert_eq!(hapt.unwrap(), Make::HaptChat { hapt: "hapt".into(), options: want });
        let spoken = Make::from_args(&MakeArgs { test: Some(10), ..make_args("spoken-digits") });
        let want = SpokenDigitsOptions { test: 10, seed: 3, ..SpokenDigitsOptions::default() };
        assert_eq!(spoken.unwrap(), Make::SpokenDigits(want));
        let e = Make::from_args(&MakeArgs { stride: Some(9), ..make_args("spoken-digits") })
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "--stride applies to `braid data make hapt-chat` and `hapt-fusion`, not spoken-digits"
        );
        let e = Make::from_args(&MakeArgs { train: Some(9), ..make_args("hapt-chat") });
        assert!(e.unwrap_err().to_string().contains("--train applies to"));
        assert_eq!(Make::from_args(&make_args("easy-vqa")).unwrap(), Make::EasyVqa);
        let e = Make::from_args(&MakeArgs { window: Some(9), ..make_args("easy-vqa") });
        assert!(e.unwrap_err().to_string().contains("--window applies to"));
    }

    #[test]
    fn fusion_make_flags_resolve_per_kind() {
        let hapt = Make::from_args(&MakeArgs { window: Some(64), ..make_args("hapt-fusion") });
        let want = HaptFusionOptions { window: 64, stride: 32, force: false };
        assert_eq!(hapt.unwrap(), Make::HaptFusion { hapt: "hapt".into(), options: want });
        let av = MakeArgs {
            per_digit: Some(50),
            snr: Some(-3.0),
            train: Some(100),
            force: true,
            ..make_args("av-digits")
        };
        let clips = SpokenDigitsOptions { train: 100, test: 500, seed: 3, jobs: 0, force: false };
        let options = AvDigitsOptions {
            per_digit: Some(50),
            snr_db: -3.0,
            seed: 3,
            force: true,
            ..AvDigitsOptions::default()
        };
        assert_eq!(Make::from_args(&av).unwrap(), Make::AvDigits { audio: None, clips, options });
        let e = Make::from_args(&MakeArgs { snr: Some(0.0), ..make_args("spoken-digits") });
        let e = e.unwrap_err().to_string();
        assert_eq!(e, "--snr applies to `braid data make av-digits`, not spoken-digits");
        let e = Make::from_args(&MakeArgs { train: Some(9), ..make_args("hapt-fusion") });
        assert!(e.unwrap_err().to_string().contains("--train applies to"));
    }
}
