//! The cross-modal transformer (MulT, Tsai et al. 2019; the block of `modules/transformer.py`
//! in `yaohungt/Multimodal-Transformer`, which MultiBench's `MULTModel` wraps): each
//! input's token sequence is projected to `hidden` (MulT's kernel-1 `Conv1d`), scaled by
//! `sqrt(hidden)` and given fairseq sinusoidal positions; per target input, pre-norm
//! blocks let it attend to the other inputs' sequences (queries from the target, keys and
//! values from the sources, each normed by the same `LayerNorm` as in MulT), then a
//! feed-forward sublayer; a final norm. Read-out: the mean over positions of each target
//! (MulT takes the last position; with convolutional encoders the mean is steadier),
//! concatenated, `proj2(relu(proj1(h))) + h`, then the output layer.

use braid_core::{Features, Result};
use braid_nn::{Attention, AttentionConfig, AttentionNames, LayerNorm, Linear};
use candle_core::{Module, Tensor};
use candle_nn::VarBuilder;

use crate::FusionModel;

/// One cross-modal block: `x + attn(ln(x), ln(ctx))`, then `x + fc2(relu(fc1(ln(x))))`.
/// Variables: `attn_norm` (shared by queries and keys, as MulT's `layer_norms[0]`),
/// `attn.{q,k,v,out}_proj`, `ffn_norm`, `fc1`, `fc2`.
pub struct CrossModalBlock {
    attn_norm: LayerNorm,
    attn: Attention,
    ffn_norm: LayerNorm,
    fc1: Linear,
    fc2: Linear,
}

impl CrossModalBlock {
    /// A block of width `hidden` with `heads` heads and a `4 * hidden` feed-forward.
    pub fn new(hidden: usize, heads: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            attn_norm: LayerNorm::new(hidden, 1e-5, vb.pp("attn_norm"))?,
            attn: Attention::new(
                AttentionConfig::new(hidden, heads),
                AttentionNames::CLIP,
                vb.pp("attn"),
            )?,
            ffn_norm: LayerNorm::new(hidden, 1e-5, vb.pp("ffn_norm"))?,
            fc1: Linear::new(hidden, 4 * hidden, true, vb.pp("fc1"))?,
            fc2: Linear::new(4 * hidden, hidden, true, vb.pp("fc2"))?,
        })
    }

    /// x: `[batch, t, hidden]`; ctx: `[batch, s, hidden]` (`None`: no source present, the
    /// attention sublayer is skipped) -> `[batch, t, hidden]`.
    pub fn forward(&self, x: &Tensor, ctx: Option<&Tensor>) -> Result<Tensor> {
        let x = match ctx {
            Some(ctx) => {
                let q = self.attn_norm.forward(x)?;
                let kv = self.attn_norm.forward(ctx)?;
                (x + self.attn.forward_cross(&q, &kv, None)?)?
            }
            None => x.clone(),
        };
        let h = self.fc2.forward(&self.fc1.forward(&self.ffn_norm.forward(&x)?)?.relu()?)?;
        Ok((x + h)?)
    }
}

/// fairseq's `SinusoidalPositionalEmbedding` for positions `1..=t` (padding index 0):
/// `[sin(p f_k) | cos(p f_k)]`, `f_k = exp(-k ln(10000) / (half - 1))` -> `[t, dim]`.
pub fn sinusoidal_positions(t: usize, dim: usize, device: &candle_core::Device) -> Result<Tensor> {
    let half = dim / 2;
    let step = (10000f64).ln() / (half.max(2) - 1) as f64;
    let mut out = vec![0f32; t * dim];
    for p in 0..t {
        let pos = (p + 1) as f64;
        for k in 0..half {
            let a = pos * (-(k as f64) * step).exp();
            out[p * dim + k] = a.sin() as f32;
            out[p * dim + half + k] = a.cos() as f32;
        }
    }
    Ok(Tensor::from_vec(out, (t, dim), device)?)
}

struct Branch {
    proj: Linear,
    blocks: Vec<CrossModalBlock>,
    norm: LayerNorm,
}

/// The MulT fusion model over `n` inputs.
pub struct Mult {
    branches: Vec<Branch>,
    hidden: usize,
    proj1: Linear,
    proj2: Linear,
    out: Linear,
    classes: usize,
}

impl Mult {
    /// dims: each input's token width.
    pub fn new(
        dims: &[usize],
        classes: usize,
        hidden: usize,
        layers: usize,
        heads: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        let branches = dims
            .iter()
            .enumerate()
            .map(|(i, &d)| {
                let vb = vb.pp(format!("branches.{i}"));
                Ok(Branch {
                    proj: Linear::new(d, hidden, false, vb.pp("proj"))?,
                    blocks: (0..layers)
                        .map(|l| CrossModalBlock::new(hidden, heads, vb.pp(format!("blocks.{l}"))))
                        .collect::<Result<_>>()?,
                    norm: LayerNorm::new(hidden, 1e-5, vb.pp("norm"))?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let width = hidden * dims.len();
        Ok(Self {
            branches,
            hidden,
            proj1: Linear::new(width, width, true, vb.pp("proj1"))?,
            proj2: Linear::new(width, width, true, vb.pp("proj2"))?,
            out: Linear::new(width, classes, true, vb.pp("out"))?,
            classes,
        })
    }

    fn embed(&self, i: usize, tokens: &Tensor) -> Result<Tensor> {
        let x = (self.branches[i].proj.forward(tokens)? * (self.hidden as f64).sqrt())?;
        let pos = sinusoidal_positions(x.dim(1)?, self.hidden, x.device())?;
        Ok(x.broadcast_add(&pos.unsqueeze(0)?)?)
    }
}

impl FusionModel for Mult {
    fn num_modalities(&self) -> usize {
        self.branches.len()
    }
    fn num_classes(&self) -> usize {
        self.classes
    }
    fn forward(&self, inputs: &[Option<Features>]) -> Result<Tensor> {
        let seqs: Vec<Option<Tensor>> = inputs
            .iter()
            .enumerate()
            .map(|(i, f)| f.as_ref().map(|f| self.embed(i, &f.tokens)).transpose())
            .collect::<Result<_>>()?;
        let (b, dev) = crate::fusion::batch_of(&seqs)?;
        let mut outs = Vec::with_capacity(seqs.len());
        for (i, target) in seqs.iter().enumerate() {
            let Some(target) = target else {
                outs.push(Tensor::zeros((b, self.hidden), candle_core::DType::F32, &dev)?);
                continue;
            };
            let sources: Vec<&Tensor> = seqs
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .filter_map(|(_, s)| s.as_ref())
                .collect();
            let ctx = if sources.is_empty() { None } else { Some(Tensor::cat(&sources, 1)?) };
            let mut x = target.clone();
            for block in &self.branches[i].blocks {
                x = block.forward(&x, ctx.as_ref())?;
            }
            outs.push(self.branches[i].norm.forward(&x)?.mean(1)?);
        }
        let h = Tensor::cat(&outs, 1)?;
        let h = (self.proj2.forward(&self.proj1.forward(&h)?.relu()?)? + &h)?;
        Ok(self.out.forward(&h)?)
    }
}
