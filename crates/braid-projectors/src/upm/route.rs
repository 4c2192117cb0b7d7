//! One modality's part of the UPM (OneLLM `clip_proj1[m]`, `resample_tokens[m]`,
//! `routers[m]`, `clip_proj2[m]`, `start_tag[m]`, `end_tag[m]`).

use braid_core::{Features, Result};
use braid_nn::activation::sigmoid;
use braid_nn::{LayerNorm, Linear};
use candle_core::{DType, Module, Tensor, D};
use candle_nn::{Init, VarBuilder};

use super::{UpmConfig, UpmExperts};

/// The per-modality variables of a UPM.
#[derive(Debug, Clone)]
pub struct UpmRoute {
    proj_in: Linear,
    norm_in: LayerNorm,
    /// [1, Q, width]
    queries: Tensor,
    /// OneLLM's `Mlp`: width -> router_ratio x width, GELU, -> K.
    router: (Linear, Linear),
    proj_out: Linear,
    norm_out: LayerNorm,
    /// [1, 1, out_dim] each
    start_tag: Tensor,
    end_tag: Tensor,
    top_k: Option<usize>,
}

impl UpmRoute {
    /// Builds under `vb`; queries start from N(0, 0.02) and tags from U[0, 1), as OneLLM.
    pub fn new(cfg: &UpmConfig, in_dim: usize, out_dim: usize, vb: VarBuilder) -> Result<Self> {
        cfg.validate()?;
        let w = cfg.width;
        let inner = w * cfg.router_ratio;
        let uniform = Init::Uniform { lo: 0.0, up: 1.0 };
        Ok(Self {
            proj_in: Linear::new(in_dim, w, true, vb.pp("clip_proj1.0"))?,
            norm_in: LayerNorm::new(w, cfg.layer_norm_eps, vb.pp("clip_proj1.1"))?,
            queries: vb.get_with_hints(
                (1, cfg.queries, w),
                "resample_tokens",
                Init::Randn { mean: 0.0, stdev: 0.02 },
            )?,
            router: (
                Linear::new(w, inner, true, vb.pp("routers.fc1"))?,
                Linear::new(inner, cfg.experts, true, vb.pp("routers.fc2"))?,
            ),
            proj_out: Linear::new(w, out_dim, true, vb.pp("clip_proj2.0"))?,
            norm_out: LayerNorm::new(out_dim, cfg.layer_norm_eps, vb.pp("clip_proj2.1"))?,
            start_tag: vb.get_with_hints((1, 1, out_dim), "start_tag", uniform)?,
            end_tag: vb.get_with_hints((1, 1, out_dim), "end_tag", uniform)?,
            top_k: cfg.top_k,
        })
    }

    /// Width of the features it reads.
    pub fn in_dim(&self) -> usize {
        self.proj_in.in_dim()
    }

    /// Width of the tokens it emits.
    pub fn out_dim(&self) -> usize {
        self.proj_out.out_dim()
    }

    /// Routing weights per query token: sigmoid, the `top_k` largest kept, normalised.
    ///
    /// h: [b, Q, width] -> [b, Q, K], rows summing to one
    fn weights(&self, h: &Tensor) -> Result<Tensor> {
        let (fc1, fc2) = &self.router;
        let w = sigmoid(&fc2.forward(&fc1.forward(h)?.gelu_erf()?)?)?;
        let w = match self.top_k {
            Some(k) if k < w.dim(D::Minus1)? => {
                // The k-th largest weight of each token is a threshold, not a path for
                // gradients: the kept weights carry them.
                let (sorted, _) = w.detach().sort_last_dim(false)?;
                let kth = sorted.narrow(D::Minus1, k - 1, 1)?;
                (&w * w.broadcast_ge(&kth)?.to_dtype(w.dtype())?)?
            }
            _ => w,
        };
        Ok(w.broadcast_div(&w.sum_keepdim(D::Minus1)?)?)
    }

    /// features: tokens [b, n, in_dim], mask [b, n] -> ([b, Q + 2, out_dim], [b, Q, K])
    pub fn forward(&self, experts: &UpmExperts, features: &Features) -> Result<(Tensor, Tensor)> {
        let x = self.norm_in.forward(&self.proj_in.forward(&features.tokens)?)?;
        let (b, (_, q, w)) = (x.dim(0)?, self.queries.dims3()?);
        let queries = self.queries.broadcast_as((b, q, w))?.to_dtype(x.dtype())?;
        let h = Tensor::cat(&[&queries, &x], 1)?;
        let mask = match &features.mask {
            Some(m) => Some(Tensor::cat(
                &[&Tensor::ones((b, q), DType::F32, m.device())?, &m.to_dtype(DType::F32)?],
                1,
            )?),
            None => None,
        };
        // The router is token-wise, and only the query positions are kept.
        let weights = self.weights(&h.narrow(1, 0, q)?)?;
        let mut mixed: Option<Tensor> = None;
        for e in 0..weights.dim(D::Minus1)? {
            let out = experts.forward(e, &h, mask.as_ref())?.narrow(1, 0, q)?;
            let part = out.broadcast_mul(&weights.narrow(D::Minus1, e, 1)?)?;
            mixed = Some(match mixed {
                Some(m) => (m + part)?,
                None => part,
            });
        }
        let mixed = mixed.unwrap_or(h.narrow(1, 0, q)?.zeros_like()?);
        let out = self.norm_out.forward(&self.proj_out.forward(&mixed)?)?;
        let d = out.dim(D::Minus1)?;
        let tag = |t: &Tensor| -> Result<Tensor> {
            Ok(t.broadcast_as((b, 1, d))?.to_dtype(out.dtype())?)
        };
        let tokens = Tensor::cat(&[&tag(&self.start_tag)?, &out, &tag(&self.end_tag)?], 1)?;
        Ok((tokens, weights))
    }
}
