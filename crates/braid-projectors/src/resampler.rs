//! Cross-attention resampler: a fixed number of learned queries attend to the encoder
//! features, so any number of input tokens becomes `num_queries` LLM tokens. One layer of
//! the Flamingo perceiver resampler (Alayrac et al. 2022, `PerceiverResampler`) in the form
//! of Qwen-VL's `Resampler` (`visual.py`: `kv_proj`, `ln_q`, `ln_kv`, attention, `ln_post`).

use braid_core::{Error, Features, Result};
use braid_nn::{Attention, AttentionConfig, AttentionNames, LayerNorm, Linear};
use candle_core::{Module, Tensor};
use candle_nn::{Init, VarBuilder};
use serde::{Deserialize, Serialize};

use crate::InputProjector;

/// Options of the [`Resampler`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ResamplerConfig {
    /// Learned queries, the number of output tokens.
    pub num_queries: usize,
    /// Attention heads; must divide the output width.
    pub heads: usize,
    /// LayerNorm epsilon.
    pub eps: f64,
}

impl Default for ResamplerConfig {
    fn default() -> Self {
        Self { num_queries: 64, heads: 8, eps: 1e-6 }
    }
}

/// Learned queries `query [num_queries, out]`, `kv_proj` (in -> out, no bias), `ln_q`,
/// `ln_kv`, `attn` (`q_proj`, `k_proj`, `v_proj`, `out_proj`) and `ln_post`.
#[derive(Debug, Clone)]
pub struct Resampler {
    query: Tensor,
    kv_proj: Linear,
    ln_q: LayerNorm,
    ln_kv: LayerNorm,
    attn: Attention,
    ln_post: LayerNorm,
}

impl Resampler {
    /// Builds under `vb`; queries start from N(0, 0.02) as in Qwen-VL.
    pub fn new(
        cfg: ResamplerConfig,
        in_dim: usize,
        out_dim: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        if cfg.heads == 0 || out_dim % cfg.heads != 0 {
            return Err(Error::config(
                "projector.heads",
                format!("{} heads do not divide width {out_dim}", cfg.heads),
            ));
        }
        if cfg.num_queries == 0 {
            return Err(Error::config("projector.num_queries", "must be at least 1"));
        }
        let init = Init::Randn { mean: 0.0, stdev: 0.02 };
        Ok(Self {
            query: vb.get_with_hints((cfg.num_queries, out_dim), "query", init)?,
            kv_proj: Linear::new(in_dim, out_dim, false, vb.pp("kv_proj"))?,
            ln_q: LayerNorm::new(out_dim, cfg.eps, vb.pp("ln_q"))?,
            ln_kv: LayerNorm::new(out_dim, cfg.eps, vb.pp("ln_kv"))?,
            attn: Attention::new(
                AttentionConfig::new(out_dim, cfg.heads),
                AttentionNames::CLIP,
                vb.pp("attn"),
            )?,
            ln_post: LayerNorm::new(out_dim, cfg.eps, vb.pp("ln_post"))?,
        })
    }

    /// Padding tokens (mask 0) are never attended to.
    ///
    /// x: [batch, n, in_dim]; mask: [batch, n] of 1/0 -> [batch, num_queries, out_dim]
    pub fn forward(&self, x: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let b = x.dim(0)?;
        let kv = self.ln_kv.forward(&self.kv_proj.forward(x)?)?;
        let q = self.ln_q.forward(&self.query)?.unsqueeze(0)?;
        let q = q.broadcast_as((b, q.dim(1)?, q.dim(2)?))?.contiguous()?;
        let out = self.attn.forward_cross(&q, &kv, mask)?;
        self.ln_post.forward(&out)
    }
}

impl InputProjector for Resampler {
    fn in_dim(&self) -> usize {
        self.kv_proj.in_dim()
    }

    fn out_dim(&self) -> usize {
        self.kv_proj.out_dim()
    }

    /// tokens [batch, n, in_dim] (mask [batch, n]) -> [batch, num_queries, out_dim], no mask
    /// (every query is a real token).
    fn project(&self, features: &Features) -> Result<Features> {
        Features::new(self.forward(&features.tokens, features.mask.as_ref())?, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{features, loss};
    use braid_nn::gradcheck::check_all_vars_get_grad;
    use candle_core::{DType, Device, IndexOp};
    use candle_nn::VarMap;

    fn build(vm: &VarMap) -> Result<Resampler> {
        let cfg = ResamplerConfig { num_queries: 3, heads: 2, eps: 1e-6 };
        Resampler::new(cfg, 6, 8, VarBuilder::from_varmap(vm, DType::F32, &Device::Cpu))
    }

    #[test]
    fn shapes_and_gradients() -> Result<()> {
        let vm = VarMap::new();
        let p = build(&vm)?;
        let out = p.project(&features(2, 5, 6, true)?)?;
        assert_eq!(out.tokens.dims(), &[2, 3, 8]);
        assert!(out.mask.is_none());
        check_all_vars_get_grad(&vm, &loss(&out)?)
    }

    /// Changing padded tokens changes nothing; changing a real token does.
    #[test]
    fn padding_is_ignored() -> Result<()> {
        let vm = VarMap::new();
        let p = build(&vm)?;
        let f = features(2, 5, 6, true)?;
        let noise = Tensor::randn(0f32, 5.0, (2, 5, 6), &Device::Cpu)?;
        let keep = f.mask_or_ones()?.unsqueeze(2)?;
        let padded_changed = (&f.tokens + noise.broadcast_mul(&(1.0 - &keep)?)?)?;
        let a = p.forward(&f.tokens, f.mask.as_ref())?;
        let b = p.forward(&padded_changed, f.mask.as_ref())?;
        let diff = (&a - &b)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
        assert!(diff < 1e-6, "padding changed the output by {diff}");
        let real_changed = (&f.tokens + noise.broadcast_mul(&keep)?)?;
        let c = p.forward(&real_changed, f.mask.as_ref())?;
        let diff = (a.i(1)? - c.i(1)?)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
        assert!(diff > 1e-3);
        Ok(())
    }

    #[test]
    fn heads_must_divide_width() {
        let vm = VarMap::new();
        let cfg = ResamplerConfig { num_queries: 3, heads: 3, eps: 1e-6 };
        let err = Resampler::new(cfg, 6, 8, VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu));
        assert!(err.is_err_and(|e| e.to_string().contains("projector.heads")));
    }
}
