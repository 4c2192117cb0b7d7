//! A Stable Diffusion folder as diffusers writes it (`model_index.json`, `unet/`, `vae/`,
//! `text_encoder/`, `tokenizer/`, `scheduler/`) and text-to-image sampling with
//! classifier-free guidance. Reference: `diffusers.StableDiffusionPipeline.__call__`:
//! the prompt padded to the tokenizer's length and encoded (last hidden state), the
//! empty prompt as the unconditional branch, noise scaled by the scheduler, the UNet run
//! on both branches at once, `uncond + g (cond - uncond)`, the VAE decoding
//! `latents / scaling_factor`.

use std::path::{Path, PathBuf};

use braid_core::checkpoint::Checkpoint;
use braid_core::{Error, Modality, Result};
use braid_data::text::TextTokenizer;
use braid_encoders::text::{ClipText, ClipTextConfig};
use candle_core::{DType, Device, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;

use super::scheduler::{Scheduler, SchedulerKind};
use super::unet::UNet2DCondition;
use super::vae::AutoencoderKl;
use crate::{GenerateOptions, Generator};

/// The largest image side drawn (SD at 2048 px is already a 256x256 latent).
pub const MAX_SIDE: usize = 2048;

/// The components of a folder, each a sub-folder.
const COMPONENTS: [&str; 5] = ["unet", "vae", "text_encoder", "tokenizer", "scheduler"];

/// A loaded Stable Diffusion pipeline.
#[derive(Debug, Clone)]
pub struct StableDiffusion {
    /// The denoiser.
    pub unet: UNet2DCondition,
    /// The latent autoencoder; None for a model that denoises pixels.
    pub vae: Option<AutoencoderKl>,
    text: ClipText,
    tokenizer: TextTokenizer,
    /// The sampler in `scheduler/`.
    pub scheduler: Scheduler,
    device: Device,
}

impl StableDiffusion {
    /// Loads every component of `dir`; a missing component, an unsupported option or a
    /// tensor missing, unused or of the wrong shape is an error naming it.
    pub fn from_folder(dir: &Path, device: &Device) -> Result<Self> {
        Self::from_folder_as(dir, device, None)
    }

    /// [`Self::from_folder`] with the folder's noise schedule sampled by `sampler` when
    /// given (whatever its own scheduler class).
    pub fn from_folder_as(
        dir: &Path,
        device: &Device,
        sampler: Option<SchedulerKind>,
    ) -> Result<Self> {
        let index = dir.join("model_index.json");
        if !index.is_file() {
            return Err(Error::format(dir, "no model_index.json: not a diffusers pipeline folder"));
        }
        let text = std::fs::read_to_string(&index).map_err(|e| Error::io(&index, e))?;
        let index: Value =
            serde_json::from_str(&text).map_err(|e| Error::format(&index, e.to_string()))?;
        // A pixel-space model has no autoencoder (`"vae": [null, null]` or no entry).
        let has_vae = index.get("vae").is_some_and(|v| v.get(0).is_some_and(|c| !c.is_null()));
        for c in COMPONENTS {
            if (c != "vae" || has_vae) && !dir.join(c).is_dir() {
                return Err(Error::format(dir, format!("component `{c}/` is missing")));
            }
        }
        let dtype = DType::F32;
        let (unet, _) = UNet2DCondition::from_folder(&dir.join("unet"), dtype, device)?;
        let vae = if has_vae {
            let (vae, _) = AutoencoderKl::from_folder(&dir.join("vae"), dtype, device)?;
            if vae.config().latent_channels != unet.config().in_channels {
                return Err(Error::format(
                    dir,
                    format!(
                        "vae latent_channels {} != unet in_channels {}",
                        vae.config().latent_channels,
                        unet.config().in_channels
                    ),
                ));
            }
            Some(vae)
        } else {
            None
        };
        let text = load_text_encoder(&dir.join("text_encoder"), device)?;
        if text.config().hidden_size != unet.config().cross_attention_dim {
            return Err(Error::format(
                dir,
                format!(
                    "text_encoder hidden_size {} != unet cross_attention_dim {}",
                    text.config().hidden_size,
                    unet.config().cross_attention_dim
                ),
            ));
        }
        let tokenizer =
            load_tokenizer(&dir.join("tokenizer"), text.config().max_position_embeddings)?;
        let scheduler =
            Scheduler::from_file_as(&dir.join("scheduler").join("scheduler_config.json"), sampler)?;
        Ok(Self { unet, vae, text, tokenizer, scheduler, device: device.clone() })
    }

    /// A pipeline from its parts (a model being trained).
    pub fn from_parts(
        unet: UNet2DCondition,
        vae: Option<AutoencoderKl>,
        text: ClipText,
        tokenizer: TextTokenizer,
        scheduler: Scheduler,
        device: &Device,
    ) -> Self {
        Self { unet, vae, text, tokenizer, scheduler, device: device.clone() }
    }

    /// The text encoder.
    pub fn text_encoder(&self) -> &ClipText {
        &self.text
    }

    /// Image pixels per latent pixel (1 without an autoencoder).
    pub fn latent_scale(&self) -> usize {
        self.vae.as_ref().map_or(1, |v| v.config().scale())
    }

    /// Tokens a prompt is padded to (the tokenizer's `model_max_length`).
    pub fn max_tokens(&self) -> usize {
        self.tokenizer.max_length()
    }

    /// Prompt -> token ids `[1, max_tokens]` (start, text, end, padding); a prompt longer
    /// than the text encoder takes is an error (diffusers would cut it silently).
    pub fn tokenize(&self, prompt: &str) -> Result<Tensor> {
        let enc = self.tokenizer.encode(prompt)?;
        if enc.truncated {
            return Err(Error::Invalid(format!(
                "the prompt is longer than the text encoder's {} tokens: shorten it",
                self.max_tokens()
            )));
        }
        let mut ids = enc.ids;
        ids.resize(self.max_tokens(), self.tokenizer.pad_id());
        Ok(Tensor::new(ids, &self.device)?.unsqueeze(0)?)
    }

    /// ids `[b, tokens]` -> the condition `[b, tokens, hidden]` (the text encoder's last
    /// hidden state, no attention mask, as SD 1.x).
    pub fn encode_ids(&self, ids: &Tensor) -> Result<Tensor> {
        self.text.forward(ids, None)
    }

    /// Prompt -> condition `[1, tokens, hidden]`.
    pub fn encode_prompt(&self, prompt: &str) -> Result<Tensor> {
        self.encode_ids(&self.tokenize(prompt)?)
    }

    /// Denoises `noise` (unit normal, `[b, latent, h, w]`) under `cond`, with classifier-free
    /// guidance against `uncond` when `guidance > 1`, by `scheduler` (the folder's when
    /// None) in `steps` steps -> latents (scaled, as the UNet sees them).
    pub fn denoise(
        &self,
        noise: &Tensor,
        cond: &Tensor,
        uncond: &Tensor,
        steps: usize,
        guidance: f64,
        scheduler: Option<&Scheduler>,
    ) -> Result<Tensor> {
        if !guidance.is_finite() || guidance < 0.0 {
            return Err(Error::config(
                "guidance",
                format!("{guidance}: must be a finite number >= 0"),
            ));
        }
        let sched = scheduler.unwrap_or(&self.scheduler);
        let plan = sched.plan(steps)?;
        let b = noise.dim(0)?;
        let guided = guidance > 1.0;
        let context = if guided {
            Tensor::cat(&[uncond.broadcast_as(cond.dims())?, cond.clone()], 0)?
        } else {
            cond.clone()
        };
        let mut x = (noise * sched.init_noise_sigma(&plan))?;
        for (i, &t) in plan.timesteps.iter().enumerate() {
            let input = if guided { Tensor::cat(&[&x, &x], 0)? } else { x.clone() };
            let input = sched.scale_model_input(&plan, i, &input)?;
            let t = Tensor::new(&[t as f32], &self.device)?;
            let out = self.unet.forward(&input, &t, &context)?;
            let out = if guided {
                let (u, c) = (out.narrow(0, 0, b)?, out.narrow(0, b, b)?);
                (&u + ((c - &u)? * guidance)?)?
            } else {
                out
            };
            x = sched.step(&plan, i, &x, &out)?;
        }
        Ok(x)
    }

    /// Latents (as the UNet sees them) -> images `[b, 3, h, w]` in [-1, 1] (unclamped).
    pub fn decode(&self, latents: &Tensor) -> Result<Tensor> {
        match &self.vae {
            Some(vae) => vae.decode(&(latents / vae.config().scaling_factor)?),
            None => Ok(latents.clone()),
        }
    }

    /// Unit normal noise for a `height` x `width` image, from `seed`.
    pub fn noise(&self, batch: usize, height: usize, width: usize, seed: u64) -> Result<Tensor> {
        let s = self.latent_scale();
        let step = s << (self.unet.config().block_out_channels.len() - 1);
        if height > MAX_SIDE || width > MAX_SIDE {
            return Err(Error::config(
                "height",
                format!("{height}x{width}: sides of at most {MAX_SIDE} pixels"),
            ));
        }
        if height == 0 || width == 0 || height % step != 0 || width % step != 0 {
            return Err(Error::config(
                "height",
                format!("{height}x{width}: sides must be positive multiples of {step}"),
            ));
        }
        let shape = (batch, self.unet.config().in_channels, height / s, width / s);
        randn(shape, seed, &self.device)
    }

    /// Text to an image `[1, 3, h, w]` in [0, 1] at the model's own size, with the folder's
    /// sampler.
    pub fn text_to_image(&self, prompt: &str, opts: &GenerateOptions) -> Result<Tensor> {
        let side = self.default_size();
        self.sample(&self.encode_prompt(prompt)?, (side, side), opts, None)
    }

    /// Condition `[b, tokens, width]` -> images `[b, 3, height, width]` in [0, 1], guided
    /// against the empty prompt, noise from `opts.seed`, by `scheduler` (else the folder's).
    pub fn sample(
        &self,
        cond: &Tensor,
        (height, width): (usize, usize),
        opts: &GenerateOptions,
        scheduler: Option<&Scheduler>,
    ) -> Result<Tensor> {
        let b = cond.dim(0)?;
        let noise = self.noise(b, height, width, opts.seed)?;
        let uncond = self.encode_prompt("")?;
        if uncond.dim(1)? != cond.dim(1)? || uncond.dim(2)? != cond.dim(2)? {
            return Err(Error::shape(
                "condition [batch, tokens, width]",
                uncond.dims(),
                cond.dims(),
            ));
        }
        let latents = self.denoise(&noise, cond, &uncond, opts.steps, opts.guidance, scheduler)?;
        Ok(((self.decode(&latents)? + 1.0)? / 2.0)?.clamp(0f32, 1f32)?)
    }

    /// The default image side (the UNet's `sample_size` times the VAE's scale).
    pub fn default_size(&self) -> usize {
        self.unet.config().sample_size * self.latent_scale()
    }
}

impl Generator for StableDiffusion {
    fn modality(&self) -> Modality {
        Modality::Image
    }

    fn cond_dim(&self) -> usize {
        self.unet.config().cross_attention_dim
    }

    fn generate(&self, cond: &Tensor, opts: &GenerateOptions) -> Result<Tensor> {
        let side = self.default_size();
        self.sample(cond, (side, side), opts, None)
    }

    fn generate_text(&self, prompt: &str, opts: &GenerateOptions) -> Result<Tensor> {
        self.text_to_image(prompt, opts)
    }
}

/// `text_encoder/`: a transformers `CLIPTextModel` (`config.json`, `model.safetensors`).
fn load_text_encoder(dir: &Path, device: &Device) -> Result<ClipText> {
    let cfg_path = dir.join("config.json");
    let text = std::fs::read_to_string(&cfg_path).map_err(|e| Error::io(&cfg_path, e))?;
    let cfg: ClipTextConfig =
        serde_json::from_str(&text).map_err(|e| Error::format(&cfg_path, e.to_string()))?;
    let path: PathBuf = ["model.safetensors", "model.fp16.safetensors"]
        .iter()
        .map(|f| dir.join(f))
        .find(|p| p.is_file())
        .ok_or_else(|| Error::format(dir, "no model.safetensors in this folder"))?;
    let ckpt = Checkpoint::open(&path)?;
    let (vb, tracker) = ckpt.var_builder(DType::F32, device);
    // transformers 4 writes `text_model.*`, transformers 5 the tower's own names.
    let vb = if ckpt.contains("text_model.embeddings.token_embedding.weight") {
        vb.pp("text_model")
    } else {
        vb
    };
    let model = ClipText::new(&cfg, vb)?;
    let mut report = tracker.report();
    // A stored position-id buffer is not a weight.
    report.unexpected.retain(|n| !n.ends_with("position_ids"));
    report.into_result(&path)?;
    Ok(model)
}

/// `tokenizer/`: `tokenizer.json`, or CLIP's `vocab.json` + `merges.txt`; the length and
/// padding token from `tokenizer_config.json` where it has them.
fn load_tokenizer(dir: &Path, positions: usize) -> Result<TextTokenizer> {
    let cfg_path = dir.join("tokenizer_config.json");
    let cfg: Value = if cfg_path.is_file() {
        let text = std::fs::read_to_string(&cfg_path).map_err(|e| Error::io(&cfg_path, e))?;
        serde_json::from_str(&text).map_err(|e| Error::format(&cfg_path, e.to_string()))?
    } else {
        Value::Null
    };
    let max = cfg
        .get("model_max_length")
        .and_then(Value::as_u64)
        .map_or(positions, |m| (m as usize).min(positions));
    let json = dir.join("tokenizer.json");
    let tok = if json.is_file() {
        TextTokenizer::from_file(&json, max)?
    } else {
        TextTokenizer::from_clip_vocab(&dir.join("vocab.json"), &dir.join("merges.txt"), max)?
    };
    match cfg.get("pad_token") {
        Some(Value::String(p)) => tok.with_pad_token(p),
        Some(Value::Object(o)) => match o.get("content").and_then(Value::as_str) {
            Some(p) => tok.with_pad_token(p),
            None => Ok(tok),
        },
        _ => Ok(tok),
    }
}

/// Seeded unit normal noise (Box-Muller over a `StdRng`).
pub fn randn(shape: (usize, usize, usize, usize), seed: u64, device: &Device) -> Result<Tensor> {
    let n = shape.0 * shape.1 * shape.2 * shape.3;
    let mut rng = StdRng::seed_from_u64(seed);
    let mut v = Vec::with_capacity(n + 1);
    while v.len() < n {
        let u1: f64 = rng.gen::<f64>().max(f64::MIN_POSITIVE);
        let u2: f64 = rng.gen();
        let r = (-2.0 * u1.ln()).sqrt();
        let a = std::f64::consts::TAU * u2;
        v.push((r * a.cos()) as f32);
        v.push((r * a.sin()) as f32);
    }
    v.truncate(n);
    Ok(Tensor::from_vec(v, shape, device)?)
}
