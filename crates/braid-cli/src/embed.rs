//! `braid embed text|image`: embeddings of a file of texts (one per line) with a
//! sentence-transformers model, or of images with a CLIP model (`get_image_features`), to
//! `.npy` (float32 [N, D]) or `.jsonl`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};
use braid_core::checkpoint::{write_npy, NpyArray};
use braid_data::text::read_lines;
use braid_encoders::image::l2_normalize;
use braid_encoders::text::SentenceEncoder;
use candle_core::{Device, Tensor};

use crate::encoders::{load_clip, load_images, model_dir, progress};

/// Flags of `braid embed`.
#[derive(Debug, clap::Args)]
pub struct EmbedArgs {
    #[command(subcommand)]
    pub what: EmbedWhat,
}

/// What to embed.
#[derive(Debug, clap::Subcommand)]
pub enum EmbedWhat {
    /// Texts, one per line, with a sentence-transformers model (e.g. minilm).
    Text(TextArgs),
    /// Images with a CLIP model folder (projected image features).
    Image(ImageArgs),
    /// Audio clips with a Whisper encoder folder (mean over time, or --pool none).
    Audio(crate::embed_signal::AudioArgs),
    /// Videos (frame folders, GIF, MP4/WebM via ffmpeg) with CLIP per-frame features.
    Video(crate::embed_signal::VideoArgs),
    /// IMU recordings (.ts, .npz, .csv) in windows, with a saved IMU encoder.
    Imu(crate::embed_signal::ImuArgs),
}

/// Flags of `braid embed text`.
#[derive(Debug, clap::Args)]
pub struct TextArgs {
    /// Registered name (minilm) or model folder.
    #[arg(long)]
    pub model: String,
    /// UTF-8 file with one text per line.
    #[arg(long)]
    pub input: PathBuf,
    /// Output, `.npy` or `.jsonl`.
    #[arg(long)]
    pub out: PathBuf,
    /// Texts per forward pass.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Truncation limit in tokens (default: the model's `max_seq_length`).
    #[arg(long)]
    pub max_length: Option<usize>,
}

/// Flags of `braid embed image`.
#[derive(Debug, clap::Args)]
pub struct ImageArgs {
    /// CLIP model folder (config.json, model.safetensors, preprocessor_config.json).
    #[arg(long)]
    pub model: String,
    /// Image files (png, jpeg, gif, webp, bmp).
    #[arg(long, num_args = 1.., required = true)]
    pub input: Vec<PathBuf>,
    /// Output, `.npy` or `.jsonl`.
    #[arg(long)]
    pub out: PathBuf,
    /// Images per forward pass.
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    /// L2-normalise each embedding.
    #[arg(long)]
    pub normalize: bool,
    /// Report unreadable images and go on with the rest.
    #[arg(long)]
    pub skip_bad: bool,
}

/// Output file kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutFormat {
    /// float32 `[N, D]`.
    Npy,
    /// One `{"input": ..., "embedding": [...]}` per line.
    Jsonl,
}

impl OutFormat {
    /// From the extension of `path`.
    pub fn of(path: &Path) -> anyhow::Result<Self> {
        match path.extension().and_then(|e| e.to_str()) {
            Some("npy") => Ok(Self::Npy),
            Some("jsonl") => Ok(Self::Jsonl),
            _ => bail!("{}: output must end in .npy or .jsonl", path.display()),
        }
    }
}

/// Runs `braid embed`.
pub fn run(args: &EmbedArgs) -> anyhow::Result<()> {
    match &args.what {
        EmbedWhat::Text(a) => embed_text(a),
        EmbedWhat::Image(a) => embed_image(a),
        EmbedWhat::Audio(a) => crate::embed_signal::embed_audio(a),
        EmbedWhat::Video(a) => crate::embed_signal::embed_video(a),
        EmbedWhat::Imu(a) => crate::embed_signal::embed_imu(a),
    }
}

fn embed_text(a: &TextArgs) -> anyhow::Result<()> {
    let format = OutFormat::of(&a.out)?;
    if a.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    let texts = read_lines(&a.input)?;
    let dev = Device::Cpu;
    let dir = model_dir(&a.model)?;
    let (enc, report) = SentenceEncoder::load(&dir, a.max_length, &dev)?;
    eprintln!("loaded {}: {report}", dir.display());
    let start = Instant::now();
    let rows =
        texts.iter().map(|t| enc.tokenizer().encode(t)).collect::<braid_core::Result<Vec<_>>>()?;
    // Longest first, as sentence-transformers does: batches pad less.
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(rows[i].ids.len()));
    let bar = progress(texts.len(), "texts");
    let mut out = vec![None; texts.len()];
    for chunk in order.chunks(a.batch_size) {
        let batch: Vec<_> = chunk.iter().map(|&i| rows[i].clone()).collect();
        let emb = enc.embed_encoded(&batch, &dev)?;
        for (j, &i) in chunk.iter().enumerate() {
            out[i] = Some(emb.get(j)?);
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    let secs = start.elapsed().as_secs_f64();
    let rows_out: Vec<Tensor> = out.into_iter().flatten().collect();
    let truncated = rows.iter().filter(|r| r.truncated).count();
    if truncated > 0 {
        let limit = enc.tokenizer().max_length();
        eprintln!(
            "warning: {truncated} of {} texts were longer than {limit} tokens and were truncated",
            texts.len()
        );
    }
    eprintln!(
        "embedded {} texts in {secs:.2} s ({:.1} texts/s)",
        texts.len(),
        texts.len() as f64 / secs
    );
    write(&a.out, format, &Tensor::stack(&rows_out, 0)?, &texts)
}

fn embed_image(a: &ImageArgs) -> anyhow::Result<()> {
    let format = OutFormat::of(&a.out)?;
    let dev = Device::Cpu;
    let (clip, proc) = load_clip(&a.model, &dev)?;
    let start = Instant::now();
    let bar = progress(a.input.len(), "images");
    let (mut feats, mut names) = (Vec::new(), Vec::new());
    for chunk in a.input.chunks(a.batch_size.max(1)) {
        let (pixels, kept) = load_images(chunk, &proc, a.skip_bad, &dev)?;
        if let Some(px) = pixels {
            let f = clip.image_features(&px)?;
            feats.push(if a.normalize { l2_normalize(&f)? } else { f });
            names.extend(kept.iter().map(|p| p.display().to_string()));
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    if feats.is_empty() {
        bail!("no image could be read");
    }
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "embedded {} images in {secs:.2} s ({:.1} images/s)",
        names.len(),
        names.len() as f64 / secs
    );
    write(&a.out, format, &Tensor::cat(&feats, 0)?, &names)
}

/// emb: [N, D] with `inputs[i]` naming row i.
fn write(path: &Path, format: OutFormat, emb: &Tensor, inputs: &[String]) -> anyhow::Result<()> {
    match format {
        OutFormat::Npy => write_npy(path, &NpyArray::from_tensor(emb)?)?,
        OutFormat::Jsonl => {
            let file = std::fs::File::create(path).with_context(|| path.display().to_string())?;
            let mut w = std::io::BufWriter::new(file);
            for (input, row) in inputs.iter().zip(emb.to_vec2::<f32>()?) {
                let line = serde_json::json!({ "input": input, "embedding": row });
                writeln!(w, "{line}").with_context(|| path.display().to_string())?;
            }
            w.flush().with_context(|| path.display().to_string())?;
        }
    }
    eprintln!("wrote {} ({} x {})", path.display(), emb.dim(0)?, emb.dim(1)?);
    Ok(())
}

#[cfg(test)]
mod tests;
