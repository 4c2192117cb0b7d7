//! `braid draw`: text to image with a generator, from a Braid model directory whose
//! `pipeline.toml` names one, or straight from a diffusers Stable Diffusion folder (users'
//! own SD weights). One PNG per prompt and seed, or one grid. `--model espeak-ng[:VOICE]`
//! speaks the prompts instead (16 kHz WAV).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use braid_generators::diffusion::{save_png_grid, SchedulerKind, StableDiffusion};
use braid_generators::speech::{Espeak, SPEECH_RATE};
use braid_generators::{GenerateOptions, Generator};
use braid_pipeline::{Pipeline, Weights};
use candle_core::{Device, Tensor};

/// Flags of `braid draw`.
#[derive(Debug, clap::Args)]
pub struct DrawArgs {
    /// A Braid model directory with a generator, a diffusers folder (model_index.json), or
    /// `espeak-ng[:VOICE]` for speech.
    #[arg(long)]
    pub model: PathBuf,
    /// Prompts; each is drawn once per seed.
    #[arg(required = true)]
    pub prompts: Vec<String>,
    /// The PNG (WAV for speech) to write (one prompt, one image).
    #[arg(long, conflicts_with_all = ["out_dir", "grid"])]
    pub out: Option<PathBuf>,
    /// A directory for `<prompt>-<seed>.png`, one per prompt and seed.
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
    /// One PNG of every image, a row per prompt.
    #[arg(long)]
    pub grid: Option<PathBuf>,
    /// Seed of the first image.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Images per prompt (seeds seed, seed + 1, ...).
    #[arg(long, short = 'n', default_value_t = 1)]
    pub n: usize,
    /// Denoising steps.
    #[arg(long, default_value_t = 50)]
    pub steps: usize,
    /// Classifier-free guidance scale (1: none).
    #[arg(long, default_value_t = 7.5)]
    pub guidance: f64,
    /// Image side in pixels (default: the model's).
    #[arg(long)]
    pub size: Option<usize>,
    /// Sampler: ddim or euler (default: the folder's scheduler).
    #[arg(long)]
    pub scheduler: Option<String>,
}

/// A generator from either kind of directory, its sampler replaced by `sampler` if given.
fn open(dir: &Path, sampler: Option<SchedulerKind>) -> anyhow::Result<StableDiffusion> {
    let dev = Device::Cpu;
    if dir.join("model_index.json").is_file() {
        return Ok(StableDiffusion::from_folder_as(dir, &dev, sampler)?);
    }
    let p = Pipeline::open(dir, Weights::Frozen { dequantize: false }, &dev)?;
    match p.generator() {
        Some(g) => {
            let mut g = g.clone();
            if let Some(kind) = sampler {
                g.scheduler = g.scheduler.with_kind(kind);
            }
            Ok(g)
        }
        None => bail!("{} has no generator (no [generator] in its pipeline.toml)", dir.display()),
    }
}

/// A file name from a prompt: lower case, runs of other characters as one `-`.
fn slug(prompt: &str) -> String {
    let mut s = String::new();
    for c in prompt.chars().flat_map(char::to_lowercase) {
        if c.is_alphanumeric() {
            s.push(c);
        } else if !s.ends_with('-') {
            s.push('-');
        }
    }
    let s = s.trim_matches('-').chars().take(60).collect::<String>();
    if s.is_empty() {
        "empty".into()
    } else {
        s
    }
}

/// Runs `braid draw`.
pub fn run(args: &DrawArgs) -> anyhow::Result<()> {
    if args.n == 0 || args.n > 1000 {
        bail!("-n {}: draw 1 to 1000 images per prompt", args.n);
    }
    if args.out.is_none() && args.out_dir.is_none() && args.grid.is_none() {
        bail!("say where the images go: --out FILE.png, --out-dir DIR or --grid FILE.png");
    }
    if args.out.is_some() && (args.prompts.len() != 1 || args.n != 1) {
        bail!("--out takes one prompt and one image; use --out-dir or --grid for more");
    }
    if let Some(engine) = args.model.to_str().and_then(Espeak::from_model_name) {
        return speak(&engine?, args);
    }
    let sampler = match args.scheduler.as_deref() {
        None => None,
        Some("ddim") => Some(SchedulerKind::Ddim),
        Some("euler") => Some(SchedulerKind::Euler),
        Some(other) => bail!("--scheduler {other}: ddim or euler"),
    };
    let sd =
        open(&args.model, sampler).with_context(|| format!("--model {}", args.model.display()))?;
    let side = args.size.unwrap_or_else(|| sd.default_size());
    if let Some(dir) = &args.out_dir {
        std::fs::create_dir_all(dir).with_context(|| dir.display().to_string())?;
    }
    let mut all = Vec::new();
    let started = std::time::Instant::now();
    for prompt in &args.prompts {
        let cond = sd.encode_prompt(prompt).with_context(|| format!("prompt {prompt:?}"))?;
        for k in 0..args.n as u64 {
            let seed = args.seed + k;
            let opts = GenerateOptions { seed, steps: args.steps, guidance: args.guidance };
            let img = sd.sample(&cond, (side, side), &opts, None)?;
            let path = match (&args.out, &args.out_dir) {
                (Some(p), _) => Some(p.clone()),
                (None, Some(d)) => Some(d.join(format!("{}-{seed}.png", slug(prompt)))),
                _ => None,
            };
            if let Some(path) = path {
                save_png_grid(&img, 1, &path)?;
                println!("{}", path.display());
            }
            all.push(img);
        }
    }
    if let Some(grid) = &args.grid {
        save_png_grid(&Tensor::cat(&all, 0)?, args.n, grid)?;
        println!("{}", grid.display());
    }
    let secs = started.elapsed().as_secs_f64();
    eprintln!("{} images in {secs:.1} s ({:.4} s an image)", all.len(), secs / all.len() as f64);
    Ok(())
}

/// Speaks each prompt to `<prompt>.wav` (or `--out`).
fn speak(engine: &Espeak, args: &DrawArgs) -> anyhow::Result<()> {
    if args.grid.is_some() || args.n != 1 {
        bail!("speech is drawn once per prompt: no --grid or -n");
    }
    if let Some(dir) = &args.out_dir {
        std::fs::create_dir_all(dir).with_context(|| dir.display().to_string())?;
    }
    for prompt in &args.prompts {
        let audio = engine.generate_text(prompt, &GenerateOptions::default())?;
        let samples = audio.flatten_all()?.to_vec1::<f32>()?;
        let path = match (&args.out, &args.out_dir) {
            (Some(p), _) => p.clone(),
            (None, Some(d)) => d.join(format!("{}.wav", slug(prompt))),
            (None, None) => bail!("speech needs --out FILE.wav or --out-dir DIR"),
        };
        braid_core::fsx::write_file(
            &path,
            &braid_data::audio::encode_wav_pcm16(&samples, SPEECH_RATE),
        )?;
        println!("{}", path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::slug;

    #[test]
    fn slugs_are_file_names() {
        assert_eq!(slug("A red Circle!"), "a-red-circle");
        assert_eq!(slug("  "), "empty");
        assert_eq!(slug("../../etc/passwd"), "etc-passwd");
    }
}
