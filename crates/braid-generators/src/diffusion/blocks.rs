//! The building blocks shared by diffusers' UNet and VAE: `ResnetBlock2D`,
//! `Transformer2DModel` (with `BasicTransformerBlock` and the GEGLU feed-forward), the VAE's
//! single-head spatial self-attention, `Downsample2D`, `Upsample2D` and the sinusoidal
//! timestep embedding. Written from `diffusers/models/{resnet,attention,embeddings}.py`,
//! `transformers/transformer_2d.py` and `attention_processor.py` (`AttnProcessor2_0`);
//! every op has a backward pass.

use braid_core::Result;
use braid_nn::{
    upsample_nearest2x, Activation, Attention, AttentionConfig, AttentionNames, Conv2d, GroupNorm,
    LayerNorm, Linear,
};
use candle_core::{DType, Module, Tensor, D};
use candle_nn::VarBuilder;

/// `F.silu`.
pub(crate) fn silu(x: &Tensor) -> Result<Tensor> {
    Activation::Silu.forward(x)
}

/// diffusers' `get_timestep_embedding` (max period 10000): t [batch] -> [batch, dim],
/// `[cos, sin]` halves when `flip`, `[sin, cos]` otherwise.
pub(crate) fn timestep_embedding(t: &Tensor, dim: usize, flip: bool, shift: f64) -> Result<Tensor> {
    let half = dim / 2;
    let freqs: Vec<f32> = (0..half)
        .map(|i| (-(10000f64.ln()) * i as f64 / (half as f64 - shift)).exp() as f32)
        .collect();
    let freqs = Tensor::new(freqs, t.device())?.unsqueeze(0)?;
    let args = t.to_dtype(DType::F32)?.unsqueeze(1)?.broadcast_mul(&freqs)?;
    let (sin, cos) = (args.sin()?, args.cos()?);
    let emb = if flip { Tensor::cat(&[cos, sin], 1)? } else { Tensor::cat(&[sin, cos], 1)? };
    Ok(if dim % 2 == 1 { emb.pad_with_zeros(1, 0, 1)? } else { emb })
}

/// `ResnetBlock2D` (time-scale-shift "default"): two GroupNorm-SiLU-conv stages, the
/// projected timestep embedding added between them, a 1x1 shortcut when channels change.
#[derive(Debug, Clone)]
pub(crate) struct ResnetBlock {
    norm1: GroupNorm,
    conv1: Conv2d,
    time_emb_proj: Option<Linear>,
    norm2: GroupNorm,
    conv2: Conv2d,
    shortcut: Option<Conv2d>,
}

impl ResnetBlock {
    /// `temb`: the timestep embedding width, None for the VAE's blocks.
    pub(crate) fn new(
        cin: usize,
        cout: usize,
        temb: Option<usize>,
        groups: usize,
        eps: f64,
        vb: VarBuilder,
    ) -> Result<Self> {
        Ok(Self {
            norm1: GroupNorm::new(groups, cin, eps, vb.pp("norm1"))?,
            conv1: Conv2d::new(cin, cout, 3, 1, 1, vb.pp("conv1"))?,
            time_emb_proj: temb
                .map(|t| Linear::new(t, cout, true, vb.pp("time_emb_proj")))
                .transpose()?,
            norm2: GroupNorm::new(groups, cout, eps, vb.pp("norm2"))?,
            conv2: Conv2d::new(cout, cout, 3, 1, 1, vb.pp("conv2"))?,
            shortcut: (cin != cout)
                .then(|| Conv2d::new(cin, cout, 1, 1, 0, vb.pp("conv_shortcut")))
                .transpose()?,
        })
    }

    /// x [b, cin, h, w]; temb [b, temb] (the UNet's, before its SiLU) -> [b, cout, h, w]
    pub(crate) fn forward(&self, x: &Tensor, temb: Option<&Tensor>) -> Result<Tensor> {
        let mut h = self.conv1.forward(&silu(&self.norm1.forward(x)?)?)?;
        if let (Some(proj), Some(t)) = (&self.time_emb_proj, temb) {
            let t = proj.forward(&silu(t)?)?.unsqueeze(2)?.unsqueeze(3)?;
            h = h.broadcast_add(&t)?;
        }
        let h = self.conv2.forward(&silu(&self.norm2.forward(&h)?)?)?;
        let skip = match &self.shortcut {
            Some(c) => c.forward(x)?,
            None => x.clone(),
        };
        Ok((skip + h)?)
    }
}

/// `Downsample2D` with its convolution: stride 2; padding 0 pads right and bottom by one
/// first (the VAE), as diffusers does.
#[derive(Debug, Clone)]
pub(crate) struct Downsample {
    conv: Conv2d,
    padding: usize,
}

impl Downsample {
    pub(crate) fn new(channels: usize, padding: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self { conv: Conv2d::new(channels, channels, 3, 2, padding, vb.pp("conv"))?, padding })
    }

    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if self.padding == 0 {
            let x = x.pad_with_zeros(2, 0, 1)?.pad_with_zeros(3, 0, 1)?;
            return self.conv.forward(&x);
        }
        self.conv.forward(x)
    }
}

/// `Upsample2D` with its convolution: nearest 2x, then a 3x3 convolution.
#[derive(Debug, Clone)]
pub(crate) struct Upsample {
    conv: Conv2d,
}

impl Upsample {
    pub(crate) fn new(channels: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self { conv: Conv2d::new(channels, channels, 3, 1, 1, vb.pp("conv"))? })
    }

    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.conv.forward(&upsample_nearest2x(x)?)
    }
}

/// `FeedForward` with GEGLU: `proj` to twice the inner width, `a * gelu(gate)`, back down.
#[derive(Debug, Clone)]
struct GegluFeedForward {
    proj: Linear,
    out: Linear,
}

impl GegluFeedForward {
    fn new(dim: usize, vb: VarBuilder) -> Result<Self> {
        let inner = 4 * dim;
        Ok(Self {
            proj: Linear::new(dim, 2 * inner, true, vb.pp("net.0.proj"))?,
            out: Linear::new(inner, dim, true, vb.pp("net.2"))?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.proj.forward(x)?;
        let inner = h.dim(D::Minus1)? / 2;
        let (a, gate) = (h.narrow(D::Minus1, 0, inner)?, h.narrow(D::Minus1, inner, inner)?);
        Ok(self.out.forward(&(a * Activation::Gelu.forward(&gate)?)?)?)
    }
}

/// `BasicTransformerBlock` (layer norms): self-attention, cross-attention to the
/// condition, GEGLU feed-forward, each pre-normed and residual.
#[derive(Debug, Clone)]
struct TransformerBlock {
    norm1: LayerNorm,
    attn1: Attention,
    norm2: LayerNorm,
    attn2: Attention,
    norm3: LayerNorm,
    ff: GegluFeedForward,
}

impl TransformerBlock {
    fn new(dim: usize, heads: usize, context: usize, vb: VarBuilder) -> Result<Self> {
        let cfg = AttentionConfig { bias: false, ..AttentionConfig::new(dim, heads) };
        let cross = AttentionConfig { context: Some(context), ..cfg };
        let names = AttentionNames::DIFFUSERS;
        Ok(Self {
            norm1: LayerNorm::new(dim, 1e-5, vb.pp("norm1"))?,
            attn1: Attention::new(cfg, names, vb.pp("attn1"))?,
            norm2: LayerNorm::new(dim, 1e-5, vb.pp("norm2"))?,
            attn2: Attention::new(cross, names, vb.pp("attn2"))?,
            norm3: LayerNorm::new(dim, 1e-5, vb.pp("norm3"))?,
            ff: GegluFeedForward::new(dim, vb.pp("ff"))?,
        })
    }

    /// x [b, hw, dim]; context [b, tokens, context] -> [b, hw, dim]
    fn forward(&self, x: &Tensor, context: &Tensor) -> Result<Tensor> {
        let x = (x + self.attn1.forward(&self.norm1.forward(x)?, None, None)?)?;
        let x = (&x + self.attn2.forward_cross(&self.norm2.forward(&x)?, context, None)?)?;
        Ok((&x + self.ff.forward(&self.norm3.forward(&x)?)?)?)
    }
}

/// How a `Transformer2DModel` moves between the feature map and tokens.
#[derive(Debug, Clone)]
enum Projection {
    /// 1x1 convolutions (SD 1.x).
    Conv(Conv2d, Conv2d),
    /// Linear layers on the tokens (SD 2.x).
    Linear(Linear, Linear),
}

/// `Transformer2DModel` over a feature map: GroupNorm (eps 1e-6), projection in, the
/// transformer blocks over the `h * w` tokens, projection out, residual.
#[derive(Debug, Clone)]
pub(crate) struct SpatialTransformer {
    norm: GroupNorm,
    proj: Projection,
    blocks: Vec<TransformerBlock>,
}

/// The shape of one [`SpatialTransformer`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct SpatialShape {
    pub channels: usize,
    pub heads: usize,
    pub layers: usize,
    pub context: usize,
    pub groups: usize,
    pub linear: bool,
}

impl SpatialTransformer {
    pub(crate) fn new(s: SpatialShape, vb: VarBuilder) -> Result<Self> {
        let c = s.channels;
        let proj = if s.linear {
            Projection::Linear(
                Linear::new(c, c, true, vb.pp("proj_in"))?,
                Linear::new(c, c, true, vb.pp("proj_out"))?,
            )
        } else {
            Projection::Conv(
                Conv2d::new(c, c, 1, 1, 0, vb.pp("proj_in"))?,
                Conv2d::new(c, c, 1, 1, 0, vb.pp("proj_out"))?,
            )
        };
        let blocks = (0..s.layers)
            .map(|i| {
                TransformerBlock::new(
                    c,
                    s.heads,
                    s.context,
                    vb.pp(format!("transformer_blocks.{i}")),
                )
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { norm: GroupNorm::new(s.groups, c, 1e-6, vb.pp("norm"))?, proj, blocks })
    }

    /// x [b, c, h, w]; context [b, tokens, context] -> [b, c, h, w]
    pub(crate) fn forward(&self, x: &Tensor, context: &Tensor) -> Result<Tensor> {
        let (b, c, h, w) = x.dims4()?;
        let normed = self.norm.forward(x)?;
        let tokens =
            |m: &Tensor| -> Result<Tensor> { Ok(m.permute((0, 2, 3, 1))?.reshape((b, h * w, c))?) };
        let map = |t: &Tensor| -> Result<Tensor> {
            Ok(t.reshape((b, h, w, c))?.permute((0, 3, 1, 2))?.contiguous()?)
        };
        let mut t = match &self.proj {
            Projection::Conv(pin, _) => tokens(&pin.forward(&normed)?)?,
            Projection::Linear(pin, _) => pin.forward(&tokens(&normed)?)?,
        };
        for block in &self.blocks {
            t = block.forward(&t, context)?;
        }
        let out = match &self.proj {
            Projection::Conv(_, pout) => pout.forward(&map(&t)?)?,
            Projection::Linear(_, pout) => map(&pout.forward(&t)?)?,
        };
        Ok((out + x)?)
    }
}

/// The VAE's middle attention (`Attention` with a group norm, one head as wide as the
/// channels, biases, residual): self-attention over the `h * w` positions.
#[derive(Debug, Clone)]
pub(crate) struct SpatialSelfAttention {
    norm: GroupNorm,
    attn: Attention,
}

impl SpatialSelfAttention {
    pub(crate) fn new(channels: usize, groups: usize, vb: VarBuilder) -> Result<Self> {
        let cfg = AttentionConfig::new(channels, 1);
        Ok(Self {
            norm: GroupNorm::new(groups, channels, 1e-6, vb.pp("group_norm"))?,
            attn: Attention::new(cfg, AttentionNames::DIFFUSERS, vb)?,
        })
    }

    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, c, h, w) = x.dims4()?;
        let t = self.norm.forward(x)?.reshape((b, c, h * w))?.transpose(1, 2)?;
        let y = self.attn.forward(&t.contiguous()?, None, None)?;
        Ok((y.transpose(1, 2)?.reshape((b, c, h, w))? + x)?)
    }
}
