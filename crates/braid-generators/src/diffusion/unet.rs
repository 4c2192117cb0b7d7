//! diffusers' `UNet2DConditionModel` (Rombach et al. 2022, the Stable Diffusion UNet):
//! timestep embedding, `conv_in`, down blocks (resnets, optional cross-attention
//! transformers, a strided convolution), the middle block (resnet, transformer, resnet),
//! up blocks that concatenate the matching skip connections, GroupNorm-SiLU-`conv_out`.
//! Reference: `diffusers/models/unets/unet_2d_condition.py` and `unet_2d_blocks.py`
//! (`CrossAttnDownBlock2D`, `DownBlock2D`, `UNetMidBlock2DCrossAttn`, `UpBlock2D`,
//! `CrossAttnUpBlock2D`).

use std::path::Path;

use braid_core::checkpoint::{Checkpoint, LoadReport};
use braid_core::{Error, Result};
use braid_nn::{Conv2d, GroupNorm, Linear};
use candle_core::{DType, Device, Module, Tensor};
use candle_nn::VarBuilder;

use super::blocks::{
    silu, timestep_embedding, Downsample, ResnetBlock, SpatialShape, SpatialTransformer, Upsample,
};
use super::config::{BlockKind, UNetConfig};

/// One down or up block: resnets, each optionally followed by a transformer.
#[derive(Debug, Clone)]
struct Stage {
    resnets: Vec<ResnetBlock>,
    attentions: Vec<SpatialTransformer>,
}

impl Stage {
    fn layer(&self, i: usize, x: &Tensor, temb: &Tensor, context: &Tensor) -> Result<Tensor> {
        let h = self.resnets[i].forward(x, Some(temb))?;
        match self.attentions.get(i) {
            Some(a) => a.forward(&h, context),
            None => Ok(h),
        }
    }
}

#[derive(Debug, Clone)]
struct DownBlock {
    stage: Stage,
    down: Option<Downsample>,
}

#[derive(Debug, Clone)]
struct UpBlock {
    stage: Stage,
    up: Option<Upsample>,
}

/// The conditional denoising UNet.
#[derive(Debug, Clone)]
pub struct UNet2DCondition {
    time_1: Linear,
    time_2: Linear,
    conv_in: Conv2d,
    down: Vec<DownBlock>,
    mid: Stage,
    up: Vec<UpBlock>,
    norm_out: GroupNorm,
    conv_out: Conv2d,
    cfg: UNetConfig,
}

impl UNet2DCondition {
    /// Builds from `vb` at the model root (diffusers' names).
    pub fn new(cfg: &UNetConfig, vb: VarBuilder) -> Result<Self> {
        cfg.validate()?;
        let n = cfg.block_out_channels.len();
        let ch = &cfg.block_out_channels;
        let heads = cfg.heads()?;
        let layers = cfg.transformer_layers_per_block.expand(n, "transformer_layers_per_block")?;
        let temb = cfg.time_embed_dim();
        let (groups, eps) = (cfg.norm_num_groups, cfg.norm_eps);
        let spatial = |c: usize, i: usize| SpatialShape {
            channels: c,
            heads: heads[i],
            layers: layers[i],
            context: cfg.cross_attention_dim,
            groups,
            linear: cfg.use_linear_projection,
        };
        let stage = |kind: BlockKind, ins: &[usize], out: usize, i: usize, vb: &VarBuilder| {
            let resnets = ins
                .iter()
                .enumerate()
                .map(|(j, &cin)| {
                    ResnetBlock::new(
                        cin,
                        out,
                        Some(temb),
                        groups,
                        eps,
                        vb.pp(format!("resnets.{j}")),
                    )
                })
                .collect::<Result<Vec<_>>>()?;
            let attentions = match kind {
                BlockKind::CrossAttn => (0..ins.len())
                    .map(|j| {
                        SpatialTransformer::new(spatial(out, i), vb.pp(format!("attentions.{j}")))
                    })
                    .collect::<Result<Vec<_>>>()?,
                BlockKind::Plain => Vec::new(),
            };
            Ok::<_, Error>(Stage { resnets, attentions })
        };

        let mut down = Vec::with_capacity(n);
        for (i, &kind) in cfg.down_block_types.iter().enumerate() {
            let vb = vb.pp(format!("down_blocks.{i}"));
            let cin = if i == 0 { ch[0] } else { ch[i - 1] };
            let mut ins = vec![ch[i]; cfg.layers_per_block];
            ins[0] = cin;
            let down_conv = (i + 1 < n)
                .then(|| Downsample::new(ch[i], cfg.downsample_padding, vb.pp("downsamplers.0")))
                .transpose()?;
            down.push(DownBlock { stage: stage(kind, &ins, ch[i], i, &vb)?, down: down_conv });
        }

        let c = ch[n - 1];
        let vm = vb.pp("mid_block");
        let mid = Stage {
            resnets: vec![
                ResnetBlock::new(c, c, Some(temb), groups, eps, vm.pp("resnets.0"))?,
                ResnetBlock::new(c, c, Some(temb), groups, eps, vm.pp("resnets.1"))?,
            ],
            attentions: vec![SpatialTransformer::new(spatial(c, n - 1), vm.pp("attentions.0"))?],
        };

        let mut up = Vec::with_capacity(n);
        let rev: Vec<usize> = ch.iter().rev().copied().collect();
        let mut out = rev[0];
        for (i, &kind) in cfg.up_block_types.iter().enumerate() {
            let vb = vb.pp(format!("up_blocks.{i}"));
            let prev = out;
            out = rev[i];
            let skip_last = rev[(i + 1).min(n - 1)];
            let layers_up = cfg.layers_per_block + 1;
            let ins: Vec<usize> = (0..layers_up)
                .map(|j| {
                    let skip = if j == layers_up - 1 { skip_last } else { out };
                    (if j == 0 { prev } else { out }) + skip
                })
                .collect();
            // Heads and transformer depth of the up blocks mirror the down blocks'.
            let up_conv =
                (i + 1 < n).then(|| Upsample::new(out, vb.pp("upsamplers.0"))).transpose()?;
            up.push(UpBlock { stage: stage(kind, &ins, out, n - 1 - i, &vb)?, up: up_conv });
        }

        let (kin, kout) = (cfg.conv_in_kernel, cfg.conv_out_kernel);
        Ok(Self {
            time_1: Linear::new(ch[0], temb, true, vb.pp("time_embedding.linear_1"))?,
            time_2: Linear::new(temb, temb, true, vb.pp("time_embedding.linear_2"))?,
            conv_in: Conv2d::new(cfg.in_channels, ch[0], kin, 1, kin / 2, vb.pp("conv_in"))?,
            down,
            mid,
            up,
            norm_out: GroupNorm::new(groups, ch[0], eps, vb.pp("conv_norm_out"))?,
            conv_out: Conv2d::new(ch[0], cfg.out_channels, kout, 1, kout / 2, vb.pp("conv_out"))?,
            cfg: cfg.clone(),
        })
    }

    /// Loads `dir/config.json` and `dir/diffusion_pytorch_model.safetensors` (a diffusers
    /// `unet/` folder); fails, naming them, unless every tensor is present with its shape
    /// and every stored tensor is used.
    pub fn from_folder(dir: &Path, dtype: DType, device: &Device) -> Result<(Self, LoadReport)> {
        let cfg = UNetConfig::from_file(&dir.join("config.json"))?;
        load_component(dir, dtype, device, |vb| Self::new(&cfg, vb))
    }

    /// The configuration.
    pub fn config(&self) -> &UNetConfig {
        &self.cfg
    }

    /// The predicted noise (or v, or sample, as the model was trained).
    ///
    /// x: [b, in, h, w]; t: [b] or [1] timesteps (f32, fractional allowed); context:
    /// [b, tokens, cross_attention_dim] -> [b, out, h, w]. `h` and `w` must be multiples of
    /// 2^(blocks - 1).
    pub fn forward(&self, x: &Tensor, t: &Tensor, context: &Tensor) -> Result<Tensor> {
        let (b, c, h, w) = x.dims4()?;
        let n = self.cfg.block_out_channels.len();
        let step = 1usize << (n - 1);
        if c != self.cfg.in_channels || h % step != 0 || w % step != 0 {
            return Err(Error::Invalid(format!(
                "UNet input {:?}: expected {} channels and a height and width divisible by {step}",
                x.dims(),
                self.cfg.in_channels
            )));
        }
        let (cb, _, cd) = context.dims3()?;
        if cb != b || cd != self.cfg.cross_attention_dim {
            return Err(Error::shape(
                "UNet condition [batch, tokens, cross_attention_dim]",
                &[b, 0, self.cfg.cross_attention_dim],
                context.dims(),
            ));
        }
        let t = t.to_dtype(DType::F32)?.flatten_all()?;
        let t = if t.dim(0)? == 1 { t.broadcast_as(b)?.contiguous()? } else { t };
        let ch0 = self.cfg.block_out_channels[0];
        let emb = timestep_embedding(&t, ch0, self.cfg.flip_sin_to_cos, self.cfg.freq_shift)?
            .to_dtype(x.dtype())?;
        let temb = self.time_2.forward(&silu(&self.time_1.forward(&emb)?)?)?;
        let context = context.to_dtype(x.dtype())?;

        let mut h = self.conv_in.forward(x)?;
        let mut skips = vec![h.clone()];
        for block in &self.down {
            for i in 0..block.stage.resnets.len() {
                h = block.stage.layer(i, &h, &temb, &context)?;
                skips.push(h.clone());
            }
            if let Some(d) = &block.down {
                h = d.forward(&h)?;
                skips.push(h.clone());
            }
        }
        h = self.mid.resnets[0].forward(&h, Some(&temb))?;
        h = self.mid.attentions[0].forward(&h, &context)?;
        h = self.mid.resnets[1].forward(&h, Some(&temb))?;
        for block in &self.up {
            for i in 0..block.stage.resnets.len() {
                let skip =
                    skips.pop().ok_or_else(|| Error::Invalid("UNet: skips exhausted".into()))?;
                h = block.stage.layer(i, &Tensor::cat(&[&h, &skip], 1)?, &temb, &context)?;
            }
            if let Some(u) = &block.up {
                h = u.forward(&h)?;
            }
        }
        self.conv_out.forward(&silu(&self.norm_out.forward(&h)?)?)
    }
}

/// Builds a component from the weights in its diffusers folder; an error names every
/// tensor missing, unused or of the wrong shape.
pub(crate) fn load_component<M>(
    dir: &Path,
    dtype: DType,
    device: &Device,
    build: impl FnOnce(VarBuilder) -> Result<M>,
) -> Result<(M, LoadReport)> {
    let path = weights_file(dir)?;
    let ckpt = Checkpoint::open(&path)?;
    let (vb, tracker) = ckpt.var_builder(dtype, device);
    let model = build(vb)?;
    Ok((model, tracker.report().into_result(&path)?))
}

/// `diffusion_pytorch_model.safetensors` (or `.fp16.safetensors`) in a diffusers
/// component folder.
fn weights_file(dir: &Path) -> Result<std::path::PathBuf> {
    ["diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.safetensors"]
        .iter()
        .map(|f| dir.join(f))
        .find(|p| p.is_file())
        .ok_or_else(|| Error::format(dir, "no diffusion_pytorch_model.safetensors in this folder"))
}
