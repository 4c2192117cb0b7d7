//! Mixture of projection experts with soft routing: OneLLM's universal projection module
//! (Han et al. 2024, "OneLLM: One Framework to Align All Modalities with Language";
//! reference `model/LLM/onellm.py`, `encode_image`: `clip_proj1`, `resample_tokens`,
//! `routers`, `resample_layers`). Features are projected to the LLM width, a modality's
//! learnable tokens are prepended, that modality's router gives each token a softmax over
//! the K experts, and the output is the weighted sum of the experts' outputs.
//!
//! Differences from OneLLM, on purpose: the experts are token-wise MLPs (OneLLM's are
//! transformer blocks that mix tokens, of which it keeps only the modality-token positions),
//! so every position is kept, modality tokens first; and the router is one linear layer with
//! a softmax (OneLLM: an MLP with sigmoid weights normalised to sum one).

use braid_core::{Error, Features, Modality, Result};
use braid_nn::{softmax, Activation, LayerNorm, Linear, Mlp, MlpConfig, MlpNames};
use candle_core::{DType, Module, Tensor, D};
use candle_nn::{Init, VarBuilder};
use serde::{Deserialize, Serialize};

use crate::InputProjector;

/// Options of the [`MoeProjector`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MoeConfig {
    /// Number of expert MLPs (K; 3 in OneLLM).
    pub num_experts: usize,
    /// Learnable tokens per modality, prepended to its features (30 in OneLLM).
    pub num_tokens: usize,
    /// Modalities with their own tokens and router; the first is the default.
    pub modalities: Vec<Modality>,
    /// Expert inner width as a multiple of the output width.
    pub mlp_ratio: usize,
    /// LayerNorm epsilon.
    pub eps: f64,
}

impl Default for MoeConfig {
    fn default() -> Self {
        Self {
            num_experts: 3,
            num_tokens: 30,
            modalities: vec![Modality::Image],
            mlp_ratio: 4,
            eps: 1e-6,
        }
    }
}

/// `proj_in` + `norm_in` (in -> out), `modality_tokens.<m> [num_tokens, out]`,
/// `routers.<m>` (out -> K), `experts.<k>` (`fc1`, `fc2`).
#[derive(Debug, Clone)]
pub struct MoeProjector {
    proj_in: Linear,
    norm_in: LayerNorm,
    /// Per modality, in config order: its tokens and its router.
    routes: Vec<(Modality, Tensor, Linear)>,
    experts: Vec<Mlp>,
    default: Modality,
}

impl MoeProjector {
    /// Builds under `vb`; modality tokens start from N(0, 0.02).
    pub fn new(cfg: &MoeConfig, in_dim: usize, out_dim: usize, vb: VarBuilder) -> Result<Self> {
        let Some(&default) = cfg.modalities.first() else {
            return Err(Error::config("projector.modalities", "name at least one modality"));
        };
        if cfg.num_experts == 0 {
            return Err(Error::config("projector.num_experts", "must be at least 1"));
        }
        let init = Init::Randn { mean: 0.0, stdev: 0.02 };
        let mut routes = Vec::with_capacity(cfg.modalities.len());
        for &m in &cfg.modalities {
            let t = vb.pp("modality_tokens").get_with_hints(
                (cfg.num_tokens, out_dim),
                m.name(),
                init,
            )?;
            routes.push((
                m,
                t,
                Linear::new(out_dim, cfg.num_experts, true, vb.pp("routers").pp(m.name()))?,
            ));
        }
        let mlp = MlpConfig {
            hidden: out_dim,
            intermediate: out_dim * cfg.mlp_ratio.max(1),
            activation: Activation::Gelu,
            gated: false,
            bias: true,
        };
        let experts = (0..cfg.num_experts)
            .map(|k| Mlp::new(mlp, MlpNames::CLIP, vb.pp("experts").pp(k.to_string())))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            proj_in: Linear::new(in_dim, out_dim, true, vb.pp("proj_in"))?,
            norm_in: LayerNorm::new(out_dim, cfg.eps, vb.pp("norm_in"))?,
            routes,
            experts,
            default,
        })
    }

    /// The modality [`InputProjector::project`] uses.
    pub fn default_modality(&self) -> Modality {
        self.default
    }

    fn router(&self, modality: Modality) -> Result<(&Tensor, &Linear)> {
        match self.routes.iter().find(|(m, _, _)| *m == modality) {
            Some((_, t, r)) => Ok((t, r)),
            None => Err(Error::Unknown {
                kind: "projector modality".into(),
                name: modality.name().into(),
                known: self.routes.iter().map(|(m, _, _)| m.name().to_string()).collect(),
            }),
        }
    }

    /// Projects and prepends the modality tokens.
    ///
    /// x: [batch, n, in_dim] -> [batch, num_tokens + n, out_dim]
    pub fn embed(&self, x: &Tensor, modality: Modality) -> Result<Tensor> {
        let (tokens, _) = self.router(modality)?;
        let h = self.norm_in.forward(&self.proj_in.forward(x)?)?;
        let (b, (t, d)) = (h.dim(0)?, tokens.dims2()?);
        let tokens = tokens.unsqueeze(0)?.broadcast_as((b, t, d))?.to_dtype(h.dtype())?;
        Ok(Tensor::cat(&[&tokens, &h], 1)?)
    }

    /// The router's softmax over experts, per token.
    ///
    /// h: [batch, m, out_dim] (from [`Self::embed`]) -> [batch, m, num_experts], rows sum to 1
    pub fn routing_weights(&self, h: &Tensor, modality: Modality) -> Result<Tensor> {
        let (_, router) = self.router(modality)?;
        softmax(&router.forward(h)?, D::Minus1)
    }

    /// x: [batch, n, in_dim] -> [batch, num_tokens + n, out_dim]
    pub fn forward(&self, x: &Tensor, modality: Modality) -> Result<Tensor> {
        let h = self.embed(x, modality)?;
        let weights = self.routing_weights(&h, modality)?;
        let mut out = h.zeros_like()?;
        for (k, expert) in self.experts.iter().enumerate() {
            let w = weights.narrow(D::Minus1, k, 1)?;
            out = (out + expert.forward(&h)?.broadcast_mul(&w)?)?;
        }
        Ok(out)
    }

    /// Projects features of `modality`; the modality tokens count as real in the mask.
    ///
    /// tokens [batch, n, in_dim], mask [batch, n] -> [batch, num_tokens + n, out_dim], mask
    /// [batch, num_tokens + n]
    pub fn project_as(&self, features: &Features, modality: Modality) -> Result<Features> {
        let out = self.forward(&features.tokens, modality)?;
        let mask = match &features.mask {
            None => None,
            Some(m) => {
                let (b, t) = (m.dim(0)?, out.dim(1)? - m.dim(1)?);
                let ones = Tensor::ones((b, t), DType::F32, m.device())?;
                Some(Tensor::cat(&[&ones, &m.to_dtype(DType::F32)?], 1)?)
            }
        };
        Features::new(out, mask)
    }
}

impl InputProjector for MoeProjector {
    fn in_dim(&self) -> usize {
        self.proj_in.in_dim()
    }

    fn out_dim(&self) -> usize {
        self.proj_in.out_dim()
    }

    /// [`MoeProjector::project_as`] with the first configured modality.
    fn project(&self, features: &Features) -> Result<Features> {
        self.project_as(features, self.default)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{features, loss};
    use braid_nn::gradcheck::check_all_vars_get_grad;
    use candle_core::Device;
    use candle_nn::VarMap;

    fn build(vm: &VarMap) -> Result<MoeProjector> {
        let cfg = MoeConfig {
            num_experts: 3,
            num_tokens: 2,
            modalities: vec![Modality::Image, Modality::Imu],
            mlp_ratio: 2,
            eps: 1e-6,
        };
        MoeProjector::new(&cfg, 6, 8, VarBuilder::from_varmap(vm, DType::F32, &Device::Cpu))
    }

    #[test]
    fn shapes_and_mask() -> Result<()> {
        let p = build(&VarMap::new())?;
        let out = p.project(&features(2, 5, 6, true)?)?;
        assert_eq!(out.tokens.dims(), &[2, 7, 8]);
        let mask = out.mask.as_ref().map(|m| m.to_vec2::<f32>()).transpose()?;
        assert_eq!(mask.map(|m| m[1].clone()), Some(vec![1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0]));
        Ok(())
    }

    #[test]
    fn routing_weights_sum_to_one_per_token() -> Result<()> {
        let p = build(&VarMap::new())?;
        let h = p.embed(&features(2, 5, 6, false)?.tokens, Modality::Imu)?;
        let w = p.routing_weights(&h, Modality::Imu)?;
        assert_eq!(w.dims(), &[2, 7, 3]);
        for row in w.sum(D::Minus1)?.flatten_all()?.to_vec1::<f32>()? {
            assert!((row - 1.0).abs() < 1e-6, "row sums to {row}");
        }
        Ok(())
    }

    /// Every variable of both modalities gets gradient when each modality is used once.
    #[test]
    fn gradients_reach_every_variable() -> Result<()> {
        let vm = VarMap::new();
        let p = build(&vm)?;
        let f = features(2, 5, 6, true)?;
        let total = (loss(&p.project_as(&f, Modality::Image)?)?
            + loss(&p.project_as(&f, Modality::Imu)?)?)?;
        check_all_vars_get_grad(&vm, &total)
    }

    #[test]
    fn each_expert_receives_gradient() -> Result<()> {
        let vm = VarMap::new();
        let p = build(&vm)?;
        let grads = loss(&p.project(&features(2, 5, 6, false)?)?)?.backward()?;
        let data = vm.data().lock().map_err(|e| Error::Invalid(e.to_string()))?;
        for k in 0..3 {
            for part in ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"] {
                let name = format!("experts.{k}.{part}");
                let var =
                    data.get(&name).ok_or_else(|| Error::Invalid(format!("no variable {name}")))?;
                let g = grads
                    .get(var.as_tensor())
                    .ok_or_else(|| Error::Invalid(format!("{name}: no gradient")))?;
                let peak = g.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
                assert!(peak > 0.0, "{name}: zero gradient");
            }
        }
        Ok(())
    }

    #[test]
    fn unknown_modality_lists_configured_ones() -> Result<()> {
        let p = build(&VarMap::new())?;
        let err =
            p.project_as(&features(1, 3, 6, false)?, Modality::Audio).unwrap_err().to_string();
        assert!(err.contains("audio") && err.contains("image, imu"), "{err}");
        Ok(())
    }
}
