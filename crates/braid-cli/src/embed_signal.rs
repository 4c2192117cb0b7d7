//! `braid embed audio|video|imu`: the encoder's output mean-pooled over time into `.npy`
//! `[N, D]`, or with `--pool none` the whole sequence `[N, T, D]`.
//! Audio: a Hugging Face Whisper folder (config.json, model.safetensors,
//! preprocessor_config.json); video: a CLIP folder (per-frame image features); IMU: a
//! Braid model directory with an IMU encoder (`pipeline.toml`).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use braid_core::checkpoint::{write_npy, NpyArray};
use braid_core::Modality;
use braid_data::audio::{load_audio, AudioOptions, WhisperFeatures, WhisperFeaturesConfig};
use braid_data::imu::{sliding_windows, whole_recordings, window_batch, WindowConfig};
use braid_data::video::{frames_tensor, load_video, FrameSampling, VideoOptions};
use braid_encoders::audio::WhisperEncoder;
use braid_encoders::Encoder;
use braid_nn::mean_pool;
use braid_pipeline::{Input, Pipeline, Preprocess};
use candle_core::{DType, Device, Tensor};

use crate::encoders::{load_clip, model_dir, progress};

/// Pooling over time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Pool {
    /// Mean over the real (unpadded) positions: `[N, D]`.
    Mean,
    /// Every position: `[N, T, D]`.
    None,
}

/// Flags of `braid embed audio`.
#[derive(Debug, clap::Args)]
pub struct AudioArgs {
    /// Whisper model folder (config.json, model.safetensors, preprocessor_config.json).
    #[arg(long)]
    pub model: String,
    /// Audio files (wav, flac, ogg, mp3); at most the first 30 s of each is used.
    #[arg(long, num_args = 1.., required = true)]
    pub input: Vec<PathBuf>,
    /// Output `.npy`.
    #[arg(long)]
    pub out: PathBuf,
    /// Pooling over time.
    #[arg(long, value_enum, default_value = "mean")]
    pub pool: Pool,
    /// Hidden state to read (transformers' `hidden_states` index; -1 = normed output).
    #[arg(long, default_value_t = -1, allow_hyphen_values = true)]
    pub layer: isize,
}

/// Flags of `braid embed video`.
#[derive(Debug, clap::Args)]
pub struct VideoArgs {
    /// CLIP model folder (config.json, model.safetensors, preprocessor_config.json).
    #[arg(long)]
    pub model: String,
    /// Videos: frame folders, GIFs, or files ffmpeg reads (mp4, webm, ...).
    #[arg(long, num_args = 1.., required = true)]
    pub input: Vec<PathBuf>,
    /// Output `.npy`.
    #[arg(long)]
    pub out: PathBuf,
    /// Frames sampled per video (uniformly, unless --fps is given).
    #[arg(long, default_value_t = 8)]
    pub frames: usize,
    /// Sample at this rate instead (at most --frames frames).
    #[arg(long)]
    pub fps: Option<f64>,
    /// Pooling over frames.
    #[arg(long, value_enum, default_value = "mean")]
    pub pool: Pool,
}

/// Flags of `braid embed imu`.
#[derive(Debug, clap::Args)]
pub struct ImuArgs {
    /// A Braid model directory with an IMU encoder (`pipeline.toml`; its inputs are
    /// standardised with the statistics it keeps).
    #[arg(long)]
    pub model: PathBuf,
    /// Recordings: .ts (one row per case), .npz (HAPT layout) or .csv.
    #[arg(long, num_args = 1.., required = true)]
    pub input: Vec<PathBuf>,
    /// Output `.npy`, one row per window.
    #[arg(long)]
    pub out: PathBuf,
    /// Window length in samples (default: the model's training window, else 128; whole
    /// cases for .ts).
    #[arg(long)]
    pub window: Option<usize>,
    /// Samples between windows (default: half the window).
    #[arg(long)]
    pub stride: Option<usize>,
    /// Pooling over time.
    #[arg(long, value_enum, default_value = "mean")]
    pub pool: Pool,
}

/// tokens: [1, T, D]; real: positions to average -> [D] or [T, D]
fn pool_one(tokens: &Tensor, real: Option<&Tensor>, pool: Pool) -> anyhow::Result<Tensor> {
    Ok(match pool {
        Pool::None => tokens.squeeze(0)?,
        Pool::Mean => {
            let (_, t, _) = tokens.dims3()?;
            let ones = Tensor::ones((1, t), DType::F32, tokens.device())?;
            mean_pool(tokens, real.unwrap_or(&ones))?.squeeze(0)?
        }
    })
}

/// Stacks rows and writes `.npy`; `--pool none` rows must share their length.
fn write_rows(out: &Path, rows: &[Tensor]) -> anyhow::Result<()> {
    if out.extension().and_then(|e| e.to_str()) != Some("npy") {
        bail!("{}: output must end in .npy", out.display());
    }
    if rows.is_empty() {
        bail!("nothing was embedded");
    }
    if rows.iter().any(|r| r.dims() != rows[0].dims()) {
        bail!("inputs gave different sequence lengths; use --pool mean, or inputs of one length");
    }
    let emb = Tensor::stack(rows, 0)?;
    write_npy(out, &NpyArray::from_tensor(&emb)?)?;
    eprintln!("wrote {} {:?}", out.display(), emb.dims());
    Ok(())
}

/// Runs `braid embed audio`.
pub fn embed_audio(a: &AudioArgs) -> anyhow::Result<()> {
    let dev = Device::Cpu;
    let dir = model_dir(&a.model)?;
    let (enc, report) = WhisperEncoder::from_folder(&dir, DType::F32, &dev)?;
    eprintln!("loaded {}: {report}", dir.display());
    let enc = enc.with_layer(a.layer)?;
    let pre = dir.join("preprocessor_config.json");
    let fe = match pre.is_file() {
        true => WhisperFeatures::from_json_file(&pre)?,
        false => WhisperFeatures::new(WhisperFeaturesConfig {
            feature_size: enc.config().num_mel_bins,
            ..Default::default()
        }),
    };
    let cfg = fe.config().clone();
    let opts =
        AudioOptions { sample_rate: cfg.sampling_rate, max_seconds: Some(cfg.chunk_length as f64) };
    let bar = progress(a.input.len(), "clips");
    let mut rows = Vec::new();
    for path in &a.input {
        let samples = load_audio(path, &opts).with_context(|| path.display().to_string())?;
        let tokens = enc.encode(&fe.extract(&samples)?.unsqueeze(0)?, None)?.tokens;
        // Whisper attends over the padding; the mean covers the positions holding audio.
        let positions = tokens.dim(1)?;
        let real = samples.len().div_ceil(cfg.hop_length).div_ceil(2).clamp(1, positions);
        let mask: Vec<f32> = (0..positions).map(|i| if i < real { 1.0 } else { 0.0 }).collect();
        rows.push(pool_one(&tokens, Some(&Tensor::from_vec(mask, (1, positions), &dev)?), a.pool)?);
        bar.inc(1);
    }
    bar.finish_and_clear();
    write_rows(&a.out, &rows)
}

/// Runs `braid embed video`.
pub fn embed_video(a: &VideoArgs) -> anyhow::Result<()> {
    let dev = Device::Cpu;
    let (clip, proc) = load_clip(&a.model, &dev)?;
    let sampling = match a.fps {
        Some(fps) => FrameSampling::FixedRate { fps, max_frames: a.frames },
        None => FrameSampling::Uniform { frames: a.frames },
    };
    let opts = VideoOptions { sampling, ..Default::default() };
    let bar = progress(a.input.len(), "videos");
    let mut rows = Vec::new();
    for path in &a.input {
        let video = load_video(path, &opts).with_context(|| path.display().to_string())?;
        let per_frame = clip.image_features(&frames_tensor(&video.frames, &proc, &dev)?)?;
        rows.push(pool_one(&per_frame.unsqueeze(0)?, None, a.pool)?);
        bar.inc(1);
    }
    bar.finish_and_clear();
    write_rows(&a.out, &rows)
}

/// Runs `braid embed imu`.
pub fn embed_imu(a: &ImuArgs) -> anyhow::Result<()> {
    let model = Pipeline::open(
        &a.model,
        braid_pipeline::Weights::Frozen { dequantize: false },
        &Device::Cpu,
    )
    .with_context(|| format!("loading {}", a.model.display()))?;
    let pre = match model.config().slot(Modality::Imu).and_then(|s| s.preprocess.as_ref()) {
        Some(Preprocess::Imu(p)) => Some(p.clone()),
        _ => None,
    };
    let stats = pre.as_ref().map(|p| p.stats()).transpose()?;
    let mut rows = Vec::new();
    for path in &a.input {
        let ds = crate::data::read_dataset(path, None, None)?;
        let (windows, fixed) = match (a.window, path.extension().is_some_and(|e| e == "ts")) {
            (None, true) => (whole_recordings(&ds)?, None),
            (w, _) => {
                let length = w.or(pre.as_ref().and_then(|p| p.window)).unwrap_or(128);
                let cfg = WindowConfig {
                    length,
                    stride: a.stride.unwrap_or(length / 2).max(1),
                    drop_unlabelled: false,
                };
                (sliding_windows(&ds, &cfg)?, Some(length))
            }
        };
        for w in &windows {
            let len = fixed.unwrap_or(ds.recordings[w.recording].len());
            let mut x = window_batch(&ds, std::slice::from_ref(w), len)?;
            if let Some(s) = &stats {
                x = s.apply(&x)?;
            }
            let f = model.encode(&Input { modality: Modality::Imu, data: x, mask: None })?;
            rows.push(pool_one(&f.tokens, Some(&f.mask_or_ones()?), a.pool)?);
        }
        eprintln!("{}: {} windows", path.display(), windows.len());
        if windows.is_empty() {
            let len = fixed.map_or_else(|| "any".to_string(), |l| format!("the {l}-sample"));
            bail!(
                "{}: nothing to embed: every recording is shorter than {len} window (pass a shorter --window)",
                path.display()
            );
        }
    }
    write_rows(&a.out, &rows)
}

#[cfg(test)]
mod tests;
