//! `braid classify image`: zero-shot classification with CLIP (Radford et al. 2021,
//! section 3.1.2): each label becomes a prompt ("a photo of a {}."), the image is assigned
//! the softmax over `exp(logit_scale) * cos(image, prompt)`. With `--cache`, the adapter
//! that `braid adapt build` wrote (Tip-Adapter, TIP-X, ...) classifies instead, over the
//! model the cache names; `braid classify folder --cache` scores it on an image folder.

use std::path::PathBuf;

use anyhow::bail;
use braid_data::text::TextTokenizer;
use braid_encoders::image::Clip;
use candle_core::{DType, Device, Tensor};

use braid_data::image::{load_rgb, ImageFolder};
use braid_train::adapt::{fingerprint, read_cache, Adapter, CacheFile, Towers};

use crate::encoders::{load_clip, load_images, model_dir, progress};

/// Flags of `braid classify`.
#[derive(Debug, clap::Args)]
pub struct ClassifyArgs {
    #[command(subcommand)]
    pub what: ClassifyWhat,
}

/// What to classify.
#[derive(Debug, clap::Subcommand)]
pub enum ClassifyWhat {
    /// Images, zero-shot with a CLIP model folder, or with an adapter cache.
    Image(ClassifyImageArgs),
    /// Accuracy of an adapter cache on one split of an image folder.
    Folder(ClassifyFolderArgs),
}

/// Flags of `braid classify folder`.
#[derive(Debug, clap::Args)]
pub struct ClassifyFolderArgs {
    /// The adapter cache directory (`braid adapt build --out`).
    #[arg(long)]
    pub cache: PathBuf,
    /// The model, when not the one the cache names (it must be the same model).
    #[arg(long)]
    pub model: Option<String>,
    /// The image folder (`<split>/<class>/*`), its classes those of the cache.
    #[arg(long)]
    pub data: PathBuf,
    /// The split scored.
    #[arg(long, default_value = "test")]
    pub split: String,
}

/// Flags of `braid classify image`.
#[derive(Debug, clap::Args)]
pub struct ClassifyImageArgs {
    /// CLIP model folder (config.json, model.safetensors, tokenizer.json,
    /// preprocessor_config.json); with --cache, overrides the model it names (which must be
    /// the same model).
    #[arg(long, required_unless_present = "cache")]
    pub model: Option<String>,
    /// Comma-separated class names (zero-shot).
    #[arg(long, value_delimiter = ',', required_unless_present = "cache")]
    pub labels: Vec<String>,
    /// An adapter cache directory from `braid adapt build`: its classes and adapter.
    #[arg(long, conflicts_with = "labels")]
    pub cache: Option<PathBuf>,
    /// Prompt template; `{}` is replaced by the label.
    #[arg(long, default_value = "a photo of a {}.")]
    pub template: String,
    /// Images to classify.
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
    /// Report unreadable images and go on with the rest.
    #[arg(long)]
    pub skip_bad: bool,
}

/// Runs `braid classify`.
pub fn run(args: &ClassifyArgs) -> anyhow::Result<()> {
    let a = match &args.what {
        ClassifyWhat::Image(a) => a,
        ClassifyWhat::Folder(f) => return classify_folder(f),
    };
    if let Some(cache) = &a.cache {
        return classify_with_cache(a, cache);
    }
    let model = a.model.as_deref().unwrap_or_default();
    let labels: Vec<String> =
        a.labels.iter().map(|l| l.trim().to_string()).filter(|l| !l.is_empty()).collect();
    if labels.len() < 2 {
        bail!("--labels needs at least two classes, got {labels:?}");
    }
    if !a.template.contains("{}") {
        bail!("--template must contain {{}} where the label goes, got {:?}", a.template);
    }
    let dev = Device::Cpu;
    let (clip, proc) = load_clip(model, &dev)?;
    let text = label_features(&clip, &model_dir(model)?, &labels, &a.template, &dev)?;
    let bar = progress(a.images.len(), "images");
    for chunk in a.images.chunks(8) {
        let (pixels, kept) = load_images(chunk, &proc, a.skip_bad, &dev)?;
        if let Some(px) = pixels {
            let logits = clip.logits_per_image(&clip.image_features(&px)?, &text)?;
            let probs = braid_nn::softmax(&logits, 1)?.to_vec2::<f32>()?;
            for (path, p) in kept.iter().zip(probs) {
                bar.suspend(|| println!("{}", result_line(path, &labels, &p)));
            }
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    Ok(())
}

/// Text features of every prompt. -> [labels, projection_dim]
fn label_features(
    clip: &Clip,
    dir: &std::path::Path,
    labels: &[String],
    template: &str,
    dev: &Device,
) -> anyhow::Result<Tensor> {
    let max_len = clip.config().text_config.max_position_embeddings;
    let tok = TextTokenizer::from_file(&dir.join("tokenizer.json"), max_len)?;
    let prompts: Vec<String> = labels.iter().map(|l| template.replace("{}", l)).collect();
    let refs: Vec<&str> = prompts.iter().map(String::as_str).collect();
    let batch = tok.encode_batch(&refs, dev)?;
    if batch.truncated > 0 {
        eprintln!(
            "warning: {} prompts were longer than {max_len} tokens and were truncated",
            batch.truncated
        );
    }
    Ok(clip.text_features(&batch.ids.to_dtype(DType::U32)?, Some(&batch.mask))?)
}

/// `{"image": path, "label": best, "probs": {label: p, ...}}`
fn result_line(path: &std::path::Path, labels: &[String], probs: &[f32]) -> serde_json::Value {
    let best = probs.iter().enumerate().fold(0, |b, (i, &p)| if p > probs[b] { i } else { b });
    let map: serde_json::Map<String, serde_json::Value> =
        labels.iter().zip(probs).map(|(l, &p)| (l.clone(), serde_json::json!(p))).collect();
    serde_json::json!({ "image": path.display().to_string(), "label": labels[best], "probs": map })
}

/// Opens a cache and the model it was built with (or `model`), refusing a model whose
/// width or fingerprint differs from the one recorded.
fn open_cache(
    cache: &std::path::Path,
    model: Option<&str>,
    dev: &Device,
) -> anyhow::Result<(CacheFile, Adapter, Towers)> {
    let (file, adapter) = read_cache(cache, dev)?;
    let dir = match model {
        Some(m) => model_dir(m)?,
        None => braid_train::adapt::cache::model_of(cache, &file)?,
    };
    let print = fingerprint(&dir)?;
    if print != file.model_fingerprint {
        bail!(
            "{} was built with another model ({} has fingerprint {}, the cache records {}): \
             rebuild it with `braid adapt build --model {}`",
            cache.display(),
            dir.display(),
            &print[..12],
            &file.model_fingerprint[..file.model_fingerprint.len().min(12)],
            dir.display()
        );
    }
    let towers = Towers::open(&dir, dev)?;
    if towers.dim() != file.dim {
        bail!(
            "{}: the cache is {}-dimensional, {} embeds in {}",
            cache.display(),
            file.dim,
            dir.display(),
            towers.dim()
        );
    }
    Ok((file, adapter, towers))
}

fn classify_with_cache(a: &ClassifyImageArgs, cache: &std::path::Path) -> anyhow::Result<()> {
    let dev = Device::Cpu;
    let (file, adapter, towers) = open_cache(cache, a.model.as_deref(), &dev)?;
    let bar = progress(a.images.len(), "images");
    for chunk in a.images.chunks(8) {
        let mut kept = Vec::new();
        for p in chunk {
            match load_rgb(p) {
                Ok(_) => kept.push(p.clone()),
                Err(e) if a.skip_bad => bar.suspend(|| eprintln!("warning: skipping {e}")),
                Err(e) => bail!("{e} (use --skip-bad to go on without it)"),
            }
        }
        if !kept.is_empty() {
            let f = towers.image_features(&kept, &dev, &mut |_| ())?;
            let probs = braid_nn::softmax(&adapter.logits(&f)?, 1)?.to_vec2::<f32>()?;
            for (path, p) in kept.iter().zip(probs) {
                bar.suspend(|| println!("{}", result_line(path, &file.classes, &p)));
            }
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    Ok(())
}

fn classify_folder(a: &ClassifyFolderArgs) -> anyhow::Result<()> {
    let dev = Device::Cpu;
    let (file, adapter, towers) = open_cache(&a.cache, a.model.as_deref(), &dev)?;
    let folder = ImageFolder::open(&a.data, &a.split)?;
    if folder.classes != file.classes {
        bail!(
            "{}: its classes {:?} are not the cache's {:?}",
            a.data.display(),
            folder.classes,
            file.classes
        );
    }
    let paths: Vec<PathBuf> = folder.items.iter().map(|(p, _)| p.clone()).collect();
    let labels: Vec<usize> = folder.items.iter().map(|&(_, l)| l).collect();
    let bar = progress(paths.len(), "images");
    let f = towers.image_features(&paths, &dev, &mut |n| bar.inc(n as u64))?;
    bar.finish_and_clear();
    let acc = braid_train::adapt::accuracy(&adapter.predict(&f)?, &labels);
    let line = serde_json::json!({
        "cache": a.cache.display().to_string(),
        "method": file.method.name(),
        "shots": file.shots,
        "split": a.split,
        "n": labels.len(),
        "accuracy": acc,
    });
    println!("{line}");
    Ok(())
}
