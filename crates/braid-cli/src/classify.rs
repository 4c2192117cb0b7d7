//! `braid classify image`: zero-shot classification with CLIP (Radford et al. 2021,
//! section 3.1.2): each label becomes a prompt ("a photo of a {}."), the image is assigned
//! the softmax over `exp(logit_scale) * cos(image, prompt)`.

use std::path::PathBuf;

use anyhow::bail;
use braid_data::text::TextTokenizer;
use braid_encoders::image::Clip;
use candle_core::{DType, Device, Tensor};

use crate::embed::{load_clip, load_images, model_dir, progress};

/// Flags of `braid classify`.
#[derive(Debug, clap::Args)]
pub struct ClassifyArgs {
    #[command(subcommand)]
    pub what: ClassifyWhat,
}

/// What to classify.
#[derive(Debug, clap::Subcommand)]
pub enum ClassifyWhat {
    /// Images, zero-shot, with a CLIP model folder.
    Image(ClassifyImageArgs),
}

/// Flags of `braid classify image`.
#[derive(Debug, clap::Args)]
pub struct ClassifyImageArgs {
    /// CLIP model folder (config.json, model.safetensors, tokenizer.json, preprocessor_config.json).
    #[arg(long)]
    pub model: String,
    /// Comma-separated class names.
    #[arg(long, value_delimiter = ',', required = true)]
    pub labels: Vec<String>,
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
    let ClassifyWhat::Image(a) = &args.what;
    let labels: Vec<String> =
        a.labels.iter().map(|l| l.trim().to_string()).filter(|l| !l.is_empty()).collect();
    if labels.len() < 2 {
        bail!("--labels needs at least two classes, got {labels:?}");
    }
    if !a.template.contains("{}") {
        bail!("--template must contain {{}} where the label goes, got {:?}", a.template);
    }
    let dev = Device::Cpu;
    let (clip, proc) = load_clip(&a.model, &dev)?;
    let text = label_features(&clip, &model_dir(&a.model)?, &labels, &a.template, &dev)?;
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
