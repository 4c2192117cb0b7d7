//! `braid adapt`: few-shot classification over an aligned image-text model without
//! training the model (Tip-Adapter, Tip-Adapter-F, TIP-X, SuS-X, CapS-Adapter; zero-shot
//! and a linear probe beside them). `build` writes a cache directory that
//! `braid classify image --cache` uses; `table` writes the k-shot table of a target set.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use braid_data::image::ImageFolder;
use braid_train::adapt::table::{
    kshot_table, read_caps_file, sample_shots, CapsEntry, CapsPool, TableInputs,
};
use braid_train::adapt::{
    accuracy, fingerprint, fit, write_cache, CacheFile, FitInputs, Labelled, Method, Support,
    Towers, TIP_F_EPOCHS,
};
use candle_core::{Device, Tensor};

use crate::encoders::progress;

/// Flags of `braid adapt`.
#[derive(Debug, clap::Args)]
pub struct AdaptArgs {
    #[command(subcommand)]
    pub what: AdaptWhat,
}

/// What to do.
#[derive(Debug, clap::Subcommand)]
pub enum AdaptWhat {
    /// Fit one adapter on k shots per class and write its cache directory.
    Build(BuildArgs),
    /// The k-shot table of every method (mean of several samplings) as JSON, Markdown and PNG.
    Table(TableArgs),
}

/// Flags shared by `build` and `table`.
#[derive(Debug, clap::Args)]
pub struct Common {
    /// The aligned towers: a Braid contrastive model directory or a CLIP folder.
    #[arg(long)]
    pub model: String,
    /// The target set: an image folder with train/, val/ (and test/) split folders of one
    /// folder per class (`braid data make fashion-mnist|shapes-outline`).
    #[arg(long)]
    pub data: PathBuf,
    /// Prompt templates of the zero-shot classifier (repeat for an ensemble); `{}` is the
    /// class name.
    #[arg(long = "template", default_values_t = [String::from("a photo of a {}.")])]
    pub templates: Vec<String>,
    /// SuS-X: an image folder (train/<class>/...) of support images generated from the
    /// class names.
    #[arg(long)]
    pub support: Option<PathBuf>,
    /// Tip-Adapter-F's epochs over the shots (the reference: 20 for ImageNet, 100 for
    /// EuroSAT).
    #[arg(long, default_value_t = TIP_F_EPOCHS)]
    pub tip_f_epochs: usize,
    /// CapS: a JSON list of {"image", "caption", "regenerated"} for the training images
    /// (paths relative to the file): each image's caption and an image generated from it.
    #[arg(long)]
    pub caps: Option<PathBuf>,
}

/// Flags of `braid adapt build`.
#[derive(Debug, clap::Args)]
pub struct BuildArgs {
    #[command(flatten)]
    pub common: Common,
    /// zero-shot, linear-probe, tip, tip-f, tip-x, sus-x or caps.
    #[arg(long, default_value = "tip-f")]
    pub method: String,
    /// Training images per class in the cache.
    #[arg(long, default_value_t = 16)]
    pub shots: usize,
    /// Chooses the shots.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// The cache directory to write.
    #[arg(long)]
    pub out: PathBuf,
}

/// Flags of `braid adapt table`.
#[derive(Debug, clap::Args)]
pub struct TableArgs {
    #[command(flatten)]
    pub common: Common,
    /// Methods, comma-separated [default: every method whose inputs are given].
    #[arg(long, value_delimiter = ',')]
    pub methods: Vec<String>,
    /// Shots per class of the columns.
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 2, 4, 8, 16])]
    pub shots: Vec<usize>,
    /// Samplings per k.
    #[arg(long, default_value_t = 3)]
    pub seeds: u64,
    /// Folder for table.json, table.md and table.png.
    #[arg(long)]
    pub out: PathBuf,
}

/// Runs `braid adapt`.
pub fn run(args: &AdaptArgs) -> anyhow::Result<()> {
    match &args.what {
        AdaptWhat::Build(a) => build(a),
        AdaptWhat::Table(a) => table(a),
    }
}

/// The target set's features.
struct Target {
    classes: Vec<String>,
    text: Tensor,
    scale: f64,
    pool: Labelled,
    val: Labelled,
    test: Option<Labelled>,
    sus: Option<Support>,
    caps: Option<CapsPool>,
}

fn load(c: &Common, dev: &Device) -> anyhow::Result<(PathBuf, Towers, Target)> {
    let dir = crate::encoders::model_dir(&c.model)?;
    let towers = Towers::open(&dir, dev).with_context(|| format!("opening {}", dir.display()))?;
    let pool_folder = ImageFolder::open(&c.data, "train")?;
    let val_folder = ImageFolder::open(&c.data, "val")?;
    let test_folder =
        if c.data.join("test").is_dir() { Some(ImageFolder::open(&c.data, "test")?) } else { None };
    let classes = pool_folder.classes.clone();
    let text = towers.class_weights(&classes, &c.templates, dev)?;
    let embed = |f: &ImageFolder, what: &str| -> anyhow::Result<Labelled> {
        let paths: Vec<PathBuf> = f.items.iter().map(|(p, _)| p.clone()).collect();
        let bar = progress(paths.len(), what);
        let features = towers.image_features(&paths, dev, &mut |n| bar.inc(n as u64))?;
        bar.finish_and_clear();
        Ok(Labelled { features, labels: f.items.iter().map(|&(_, l)| l).collect() })
    };
    let pool = embed(&pool_folder, "training images")?;
    let val = embed(&val_folder, "validation images")?;
    let test = test_folder.as_ref().map(|f| embed(f, "test images")).transpose()?;
    let sus = match &c.support {
        Some(d) => {
            let f = ImageFolder::open(d, "train")?;
            if f.classes != classes {
                bail!(
                    "{}: its classes {:?} are not the target's {:?}",
                    d.display(),
                    f.classes,
                    classes
                );
            }
            Some(Support { images: embed(&f, "support images")?, captions: None })
        }
        None => None,
    };
    let caps = c.caps.as_ref().map(|p| caps_pool(p, &pool_folder, &towers, dev)).transpose()?;
    let scale = towers.scale()?;
    Ok((dir, towers, Target { classes, text, scale, pool, val, test, sus, caps }))
}

/// Reads the CapS file and embeds, for every training image in pool order, its caption
/// and its regenerated image.
fn caps_pool(
    path: &Path,
    pool: &ImageFolder,
    towers: &Towers,
    dev: &Device,
) -> anyhow::Result<CapsPool> {
    let entries = read_caps_file(path)?;
    let base = path.parent().unwrap_or(Path::new("."));
    let canon = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let by_image: std::collections::HashMap<PathBuf, &CapsEntry> =
        entries.iter().map(|e| (canon(&base.join(&e.image)), e)).collect();
    let mut captions = Vec::with_capacity(pool.items.len());
    let mut regenerated = Vec::with_capacity(pool.items.len());
    for (img, _) in &pool.items {
        let e = by_image.get(&canon(img)).with_context(|| {
            format!("{}: no entry for training image {}", path.display(), img.display())
        })?;
        captions.push(e.caption.clone());
        regenerated.push(base.join(&e.regenerated));
    }
    let bar = progress(regenerated.len(), "regenerated images");
    let images = towers.image_features(&regenerated, dev, &mut |n| bar.inc(n as u64))?;
    bar.finish_and_clear();
    Ok(CapsPool { regenerated: images, captions: towers.text_features(&captions, dev)? })
}

fn build(a: &BuildArgs) -> anyhow::Result<()> {
    let method = Method::parse(&a.method)?;
    let dev = Device::Cpu;
    let (model_dir, towers, t) = load(&a.common, &dev)?;
    let idx = sample_shots(&t.pool.labels, t.classes.len(), a.shots, a.seed)?;
    let support = match method {
        Method::ZeroShot => None,
        Method::SusX => Some(t.sus.clone().context("sus-x needs --support")?),
        Method::Caps => {
            let caps = t.caps.as_ref().context("caps needs --caps")?;
            let ids = Tensor::new(idx.iter().map(|&i| i as u32).collect::<Vec<_>>(), &dev)?;
            Some(Support {
                images: Labelled {
                    features: caps.regenerated.index_select(&ids, 0)?,
                    labels: idx.iter().map(|&i| t.pool.labels[i]).collect(),
                },
                captions: Some(caps.captions.index_select(&ids, 0)?),
            })
        }
        _ => Some(Support { images: t.pool.select(&idx)?, captions: None }),
    };
    let inp = FitInputs {
        classes: &t.classes,
        text: &t.text,
        scale: t.scale,
        support: support.as_ref(),
        val: &t.val,
        seed: a.seed,
        tip_f_epochs: a.common.tip_f_epochs,
    };
    let (adapter, val_acc) = fit(method, &inp)?;
    let file = CacheFile {
        method,
        model: relative_to(&model_dir, &a.out),
        model_fingerprint: fingerprint(&model_dir)?,
        dim: towers.dim(),
        classes: t.classes.clone(),
        templates: a.common.templates.clone(),
        shots: if method.uses_shots() { a.shots } else { 0 },
        params: adapter.params,
        val_accuracy: val_acc,
        data: Some(a.common.data.display().to_string()),
    };
    write_cache(&a.out, &file, &adapter)?;
    let mut line = format!(
        "{} ({} shots, seed {}): validation {:.2}%",
        method.name(),
        file.shots,
        a.seed,
        100.0 * val_acc
    );
    if let Some(test) = &t.test {
        let acc = accuracy(&adapter.predict(&test.features)?, &test.labels);
        line += &format!(", test {:.2}% of {}", 100.0 * acc, test.labels.len());
    }
    println!("{line}; wrote {}", a.out.display());
    Ok(())
}

fn table(a: &TableArgs) -> anyhow::Result<()> {
    let dev = Device::Cpu;
    let (_, _, t) = load(&a.common, &dev)?;
    let test = t.test.as_ref().context("the table needs a test/ split in --data")?;
    let methods: Vec<Method> = if a.methods.is_empty() {
        Method::ALL
            .into_iter()
            .filter(|m| match m {
                Method::SusX => t.sus.is_some(),
                Method::Caps => t.caps.is_some(),
                _ => true,
            })
            .collect()
    } else {
        a.methods.iter().map(|m| Method::parse(m)).collect::<Result<_, _>>()?
    };
    let inp = TableInputs {
        classes: &t.classes,
        text: &t.text,
        scale: t.scale,
        pool: &t.pool,
        val: &t.val,
        test,
        sus: t.sus.as_ref(),
        caps: t.caps.as_ref(),
        tip_f_epochs: a.common.tip_f_epochs,
    };
    let start = std::time::Instant::now();
    let table = kshot_table(&inp, &methods, &a.shots, a.seeds, &mut |l| println!("{l}"))?;
    let title = format!("{} ({} test images)", a.common.data.display(), test.labels.len());
    table.write(&a.out, &title)?;
    print!("{}", table.markdown());
    println!("wrote {} in {:.0} s", a.out.display(), start.elapsed().as_secs_f64());
    Ok(())
}

/// `target` written relative to the folder `from` (created) when both resolve and share
/// more than the root, so a committed cache names its model portably; else `target`'s
/// absolute path, or `target` as given.
fn relative_to(target: &Path, from: &Path) -> String {
    let _ = std::fs::create_dir_all(from);
    match (target.canonicalize(), from.canonicalize()) {
        (Ok(t), Ok(f)) => braid_pipeline::relative_path(&t, &f).unwrap_or(t).display().to_string(),
        _ => target.display().to_string(),
    }
}
