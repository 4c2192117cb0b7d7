//! diffusers' `AutoencoderKL` (the Stable Diffusion VAE): an encoder to the mean and
//! log-variance of a diagonal Gaussian over latents, a decoder back to pixels.
//! Reference: `diffusers/models/autoencoders/{autoencoder_kl,vae}.py` (`Encoder`,
//! `Decoder`, `DownEncoderBlock2D`, `UpDecoderBlock2D`, `UNetMidBlock2D`).

use std::path::Path;

use braid_core::checkpoint::LoadReport;
use braid_core::{Error, Result};
use braid_nn::{Conv2d, GroupNorm};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use super::blocks::{silu, Downsample, ResnetBlock, SpatialSelfAttention, Upsample};
use super::config::VaeConfig;
use super::unet::load_component;

/// Resnet, optional self-attention, resnet (`UNetMidBlock2D` without a timestep).
#[derive(Debug, Clone)]
struct Mid {
    first: ResnetBlock,
    attn: Option<SpatialSelfAttention>,
    second: ResnetBlock,
}

impl Mid {
    fn new(c: usize, cfg: &VaeConfig, vb: VarBuilder) -> Result<Self> {
        let g = cfg.norm_num_groups;
        Ok(Self {
            first: ResnetBlock::new(c, c, None, g, 1e-6, vb.pp("resnets.0"))?,
            attn: cfg
                .mid_block_add_attention
                .then(|| SpatialSelfAttention::new(c, g, vb.pp("attentions.0")))
                .transpose()?,
            second: ResnetBlock::new(c, c, None, g, 1e-6, vb.pp("resnets.1"))?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut h = self.first.forward(x, None)?;
        if let Some(a) = &self.attn {
            h = a.forward(&h)?;
        }
        self.second.forward(&h, None)
    }
}

/// Resnets then an optional resampling convolution.
#[derive(Debug, Clone)]
struct Level<S> {
    resnets: Vec<ResnetBlock>,
    resample: Option<S>,
}

fn resnets(
    ins: &[usize],
    out: usize,
    cfg: &VaeConfig,
    vb: &VarBuilder,
) -> Result<Vec<ResnetBlock>> {
    ins.iter()
        .enumerate()
        .map(|(j, &cin)| {
            ResnetBlock::new(
                cin,
                out,
                None,
                cfg.norm_num_groups,
                1e-6,
                vb.pp(format!("resnets.{j}")),
            )
        })
        .collect()
}

/// The encoder half: image -> (mean, log-variance) of the latent.
#[derive(Debug, Clone)]
struct Encoder {
    conv_in: Conv2d,
    levels: Vec<Level<Downsample>>,
    mid: Mid,
    norm_out: GroupNorm,
    conv_out: Conv2d,
}

impl Encoder {
    fn new(cfg: &VaeConfig, vb: VarBuilder) -> Result<Self> {
        let ch = &cfg.block_out_channels;
        let n = ch.len();
        let mut levels = Vec::with_capacity(n);
        for i in 0..n {
            let vb = vb.pp(format!("down_blocks.{i}"));
            let mut ins = vec![ch[i]; cfg.layers_per_block];
            ins[0] = if i == 0 { ch[0] } else { ch[i - 1] };
            levels.push(Level {
                resnets: resnets(&ins, ch[i], cfg, &vb)?,
                resample: (i + 1 < n)
                    .then(|| Downsample::new(ch[i], 0, vb.pp("downsamplers.0")))
                    .transpose()?,
            });
        }
        let c = ch[n - 1];
        Ok(Self {
            conv_in: Conv2d::new(cfg.in_channels, ch[0], 3, 1, 1, vb.pp("conv_in"))?,
            levels,
            mid: Mid::new(c, cfg, vb.pp("mid_block"))?,
            norm_out: GroupNorm::new(cfg.norm_num_groups, c, 1e-6, vb.pp("conv_norm_out"))?,
            conv_out: Conv2d::new(c, 2 * cfg.latent_channels, 3, 1, 1, vb.pp("conv_out"))?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut h = self.conv_in.forward(x)?;
        for level in &self.levels {
            for r in &level.resnets {
                h = r.forward(&h, None)?;
            }
            if let Some(d) = &level.resample {
                h = d.forward(&h)?;
            }
        }
        h = self.mid.forward(&h)?;
        self.conv_out.forward(&silu(&self.norm_out.forward(&h)?)?)
    }
}

/// The decoder half: latent -> image.
#[derive(Debug, Clone)]
struct Decoder {
    conv_in: Conv2d,
    mid: Mid,
    levels: Vec<Level<Upsample>>,
    norm_out: GroupNorm,
    conv_out: Conv2d,
}

impl Decoder {
    fn new(cfg: &VaeConfig, vb: VarBuilder) -> Result<Self> {
        let rev: Vec<usize> = cfg.block_out_channels.iter().rev().copied().collect();
        let n = rev.len();
        let mut levels = Vec::with_capacity(n);
        let mut out = rev[0];
        for (i, &c) in rev.iter().enumerate() {
            let vb = vb.pp(format!("up_blocks.{i}"));
            let prev = out;
            out = c;
            let mut ins = vec![out; cfg.layers_per_block + 1];
            ins[0] = prev;
            levels.push(Level {
                resnets: resnets(&ins, out, cfg, &vb)?,
                resample: (i + 1 < n)
                    .then(|| Upsample::new(out, vb.pp("upsamplers.0")))
                    .transpose()?,
            });
        }
        let c0 = cfg.block_out_channels[0];
        Ok(Self {
            conv_in: Conv2d::new(cfg.latent_channels, rev[0], 3, 1, 1, vb.pp("conv_in"))?,
            mid: Mid::new(rev[0], cfg, vb.pp("mid_block"))?,
            levels,
            norm_out: GroupNorm::new(cfg.norm_num_groups, c0, 1e-6, vb.pp("conv_norm_out"))?,
            conv_out: Conv2d::new(c0, cfg.out_channels, 3, 1, 1, vb.pp("conv_out"))?,
        })
    }

    fn forward(&self, z: &Tensor) -> Result<Tensor> {
        let mut h = self.mid.forward(&self.conv_in.forward(z)?)?;
        for level in &self.levels {
            for r in &level.resnets {
                h = r.forward(&h, None)?;
            }
            if let Some(u) = &level.resample {
                h = u.forward(&h)?;
            }
        }
        self.conv_out.forward(&silu(&self.norm_out.forward(&h)?)?)
    }
}

/// The KL autoencoder.
#[derive(Debug, Clone)]
pub struct AutoencoderKl {
    encoder: Encoder,
    decoder: Decoder,
    quant_conv: Option<Conv2d>,
    post_quant_conv: Option<Conv2d>,
    cfg: VaeConfig,
}

impl AutoencoderKl {
    /// Builds from `vb` at the model root (diffusers' names).
    pub fn new(cfg: &VaeConfig, vb: VarBuilder) -> Result<Self> {
        let l = cfg.latent_channels;
        Ok(Self {
            encoder: Encoder::new(cfg, vb.pp("encoder"))?,
            decoder: Decoder::new(cfg, vb.pp("decoder"))?,
            quant_conv: cfg
                .use_quant_conv
                .then(|| Conv2d::new(2 * l, 2 * l, 1, 1, 0, vb.pp("quant_conv")))
                .transpose()?,
            post_quant_conv: cfg
                .use_post_quant_conv
                .then(|| Conv2d::new(l, l, 1, 1, 0, vb.pp("post_quant_conv")))
                .transpose()?,
            cfg: cfg.clone(),
        })
    }

    /// Loads a diffusers `vae/` folder; fails, naming them, unless every tensor is
    /// present with its shape and every stored tensor is used.
    pub fn from_folder(dir: &Path, dtype: DType, device: &Device) -> Result<(Self, LoadReport)> {
        let cfg = VaeConfig::from_file(&dir.join("config.json"))?;
        load_component(dir, dtype, device, |vb| Self::new(&cfg, vb))
    }

    /// The configuration.
    pub fn config(&self) -> &VaeConfig {
        &self.cfg
    }

    /// image [b, in, h, w] in [-1, 1] -> (mean, log-variance clamped to [-30, 20]), each
    /// [b, latent, h / scale, w / scale], unscaled (multiply by `scaling_factor` for the
    /// UNet).
    pub fn encode(&self, image: &Tensor) -> Result<(Tensor, Tensor)> {
        let (_, c, h, w) = image.dims4()?;
        let s = self.cfg.scale();
        if c != self.cfg.in_channels || h % s != 0 || w % s != 0 {
            return Err(Error::Invalid(format!(
                "VAE input {:?}: expected {} channels and sides divisible by {s}",
                image.dims(),
                self.cfg.in_channels
            )));
        }
        let mut m = self.encoder.forward(image)?;
        if let Some(q) = &self.quant_conv {
            m = q.forward(&m)?;
        }
        let l = self.cfg.latent_channels;
        Ok((m.narrow(1, 0, l)?, m.narrow(1, l, l)?.clamp(-30f32, 20f32)?))
    }

    /// latent [b, latent, h, w] (unscaled: divide the UNet's by `scaling_factor`) ->
    /// image [b, out, h * scale, w * scale], roughly in [-1, 1]
    pub fn decode(&self, z: &Tensor) -> Result<Tensor> {
        let c = z.dim(1)?;
        if c != self.cfg.latent_channels {
            return Err(Error::shape(
                "VAE latent [batch, channels, h, w]",
                &[self.cfg.latent_channels],
                &[c],
            ));
        }
        let z = match &self.post_quant_conv {
            Some(p) => p.forward(z)?,
            None => z.clone(),
        };
        self.decoder.forward(&z)
    }
}
