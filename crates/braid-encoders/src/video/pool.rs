//! Temporal pooling of per-frame features: masked mean, or learned attention pooling (one
//! learned query cross-attending over the frames, as in Set Transformer's PMA, Lee et al.
//! 2019, and the attention-pooling heads of CLIP's ResNet / SigLIP's MAP head).
//! Reference: `transformers.models.siglip.modeling_siglip.SiglipMultiheadAttentionPoolingHead`.

use braid_core::{Error, Result};
use braid_nn::{mean_pool, Attention, AttentionConfig, AttentionNames};
use candle_core::Tensor;
use candle_nn::{Init, VarBuilder};
use serde::{Deserialize, Serialize};

/// How frames are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TemporalPoolingConfig {
    /// Keep every frame: `[batch, T, D]`.
    None,
    /// Masked mean over frames: `[batch, 1, D]`.
    #[default]
    Mean,
    /// A learned query attends over the frames: `[batch, 1, D]`.
    Attention {
        /// Attention heads (must divide D).
        heads: usize,
    },
}

/// A learned query `query [D]` and an attention layer `attn.{q,k,v,out}_proj`.
#[derive(Debug, Clone)]
pub struct AttentionPool {
    query: Tensor,
    attn: Attention,
}

impl AttentionPool {
    /// Builds under `vb` for width `dim`.
    pub fn new(dim: usize, heads: usize, vb: VarBuilder) -> Result<Self> {
        if heads == 0 || dim % heads != 0 {
            return Err(Error::config(
                "pooling.heads",
                format!("{heads} heads do not divide width {dim}"),
            ));
        }
        let query = vb.get_with_hints(dim, "query", Init::Randn { mean: 0.0, stdev: 0.02 })?;
        Ok(Self {
            query,
            attn: Attention::new(
                AttentionConfig::new(dim, heads),
                AttentionNames::CLIP,
                vb.pp("attn"),
            )?,
        })
    }

    /// x: [batch, T, D]; mask: [batch, T] of 1/0 -> [batch, D]
    pub fn forward(&self, x: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let (b, _, d) = x.dims3()?;
        let q = self.query.reshape((1, 1, d))?.broadcast_as((b, 1, d))?.to_dtype(x.dtype())?;
        Ok(self.attn.forward_cross(&q, x, mask)?.squeeze(1)?)
    }
}

/// The pooling a video encoder holds.
#[derive(Debug, Clone)]
pub enum TemporalPool {
    /// No pooling.
    None,
    /// Masked mean.
    Mean,
    /// Learned attention pooling.
    Attention(Box<AttentionPool>),
}

impl TemporalPool {
    /// Builds `cfg` for width `dim` (attention pooling under `vb`).
    pub fn new(cfg: TemporalPoolingConfig, dim: usize, vb: VarBuilder) -> Result<Self> {
        Ok(match cfg {
            TemporalPoolingConfig::None => Self::None,
            TemporalPoolingConfig::Mean => Self::Mean,
            TemporalPoolingConfig::Attention { heads } => {
                Self::Attention(Box::new(AttentionPool::new(dim, heads, vb)?))
            }
        })
    }

    /// x: [batch, T, D]; mask: [batch, T] -> ([batch, 1, D], None), or x and mask unchanged for `None`
    pub fn forward(&self, x: &Tensor, mask: Option<&Tensor>) -> Result<(Tensor, Option<Tensor>)> {
        let ones;
        let m = match mask {
            Some(m) => m,
            None => {
                let (b, t, _) = x.dims3()?;
                ones = Tensor::ones((b, t), x.dtype(), x.device())?;
                &ones
            }
        };
        Ok(match self {
            Self::None => (x.clone(), mask.cloned()),
            Self::Mean => (mean_pool(x, m)?.unsqueeze(1)?, None),
            Self::Attention(p) => (p.forward(x, mask)?.unsqueeze(1)?, None),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use braid_nn::gradcheck::check_all_vars_get_grad;
    use candle_core::{DType, Device};
    use candle_nn::VarMap;

    #[test]
    fn shapes_and_masked_mean() -> Result<()> {
        let vm = VarMap::new();
        let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
        let x = Tensor::new(&[[[1f32, 1.], [3., 3.], [100., 100.]]], &Device::Cpu)?;
        let mask = Tensor::new(&[[1f32, 1., 0.]], &Device::Cpu)?;
        let (y, m) = TemporalPool::new(TemporalPoolingConfig::Mean, 2, vb.clone())?
            .forward(&x, Some(&mask))?;
        assert_eq!((y.to_vec3::<f32>()?, m.is_none()), (vec![vec![vec![2f32, 2.]]], true));
        let attn = TemporalPool::new(TemporalPoolingConfig::Attention { heads: 2 }, 2, vb.clone())?;
        assert_eq!(attn.forward(&x, Some(&mask))?.0.dims(), [1, 1, 2]);
        let (same, m) = TemporalPool::new(TemporalPoolingConfig::None, 2, vb.clone())?
            .forward(&x, Some(&mask))?;
        assert_eq!((same.dims(), m.map(|m| m.dims().to_vec())), (&[1, 3, 2][..], Some(vec![1, 3])));
        assert!(AttentionPool::new(6, 4, vb).is_err());
        Ok(())
    }

    #[test]
    fn attention_pooling_ignores_masked_frames_and_every_variable_gets_a_gradient() -> Result<()> {
        let vm = VarMap::new();
        let pool =
            AttentionPool::new(8, 2, VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu))?;
        let x = Tensor::randn(0f32, 1., (2, 5, 8), &Device::Cpu)?;
        let mask = Tensor::new(&[[1f32, 1., 1., 0., 0.], [1., 1., 1., 1., 1.]], &Device::Cpu)?;
        let changed = x.slice_assign(
            &[0..1, 3..5, 0..8],
            &Tensor::ones((1, 2, 8), DType::F32, &Device::Cpu)?,
        )?;
        let (a, b) = (pool.forward(&x, Some(&mask))?, pool.forward(&changed, Some(&mask))?);
        braid_core::testing::assert_close(&a.get(0)?, &b.get(0)?, 1e-6, "masked frames")?;
        check_all_vars_get_grad(&vm, &pool.forward(&x, Some(&mask))?.sqr()?.sum_all()?)
    }
}
