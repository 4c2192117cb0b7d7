//! OneLLM's universal projection module (UPM; Han et al. 2024, "OneLLM: One Framework to
//! Align All Modalities with Language", arXiv 2312.03700; reference
//! github.com/csuhan/OneLLM `model/LLM/onellm.py`, `Transformer.encode_image` from
//! `clip_proj1` on). K experts of transformer blocks are shared by every modality of a
//! pipeline ([`UpmExperts`]); each modality has its own input projection, learnable query
//! tokens, router, output projection and start/end tags ([`UpmRoute`]).
//!
//! One modality's features `[b, n, c]` are projected to the experts' width and
//! layer-normed, the modality's Q query tokens are put in front, and every expert runs
//! its blocks over the whole sequence; only the query positions are kept. The router, an
//! MLP with sigmoid outputs normalised to sum to one over the experts (soft mixing, as
//! OneLLM; `top_k` keeps the k largest before normalising, an option OneLLM lacks),
//! weighs the experts per query token. The mixture is projected to the language model's
//! width and layer-normed, and the modality's start and end tags enclose it: the
//! projector emits `[b, Q + 2, d_llm]`, what OneLLM splices after BOS.
//!
//! Weight names follow OneLLM's, one modality per variable map: the shared map holds
//! `resample_layers.{e}.{l}.*`, a modality's map `clip_proj1.{0,1}`, `resample_tokens`,
//! `routers.{fc1,fc2}`, `clip_proj2.{0,1}`, `start_tag`, `end_tag` (OneLLM's
//! `clip_proj1.<modality>.0` and so on, without the modality key).

mod experts;
mod route;

use std::sync::Arc;

use braid_core::{Error, Features, Result};
use candle_core::Tensor;
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

pub use experts::UpmExperts;
pub use route::UpmRoute;

use crate::InputProjector;

/// Options of a UPM slot. The expert settings (`experts`, `layers`, `width`, `heads`,
/// `ffn_multiple_of`, `norm_eps`) describe the shared module and must agree between the
/// slots of a pipeline; the rest is per modality. Defaults are OneLLM's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UpmConfig {
    /// Number of experts (K; 3 in OneLLM).
    pub experts: usize,
    /// Transformer blocks per expert (8).
    pub layers: usize,
    /// The experts' width (OneLLM: CLIP ViT-L's 1024).
    pub width: usize,
    /// Attention heads in an expert block (16).
    pub heads: usize,
    /// The SwiGLU inner width is 2/3 of 4 x width rounded up to a multiple of this (256).
    pub ffn_multiple_of: usize,
    /// RMSNorm epsilon in the expert blocks.
    pub norm_eps: f64,
    /// Learnable query tokens of the modality (30).
    pub queries: usize,
    /// The router MLP's inner width as a multiple of `width` (4).
    pub router_ratio: usize,
    /// Keep only the k largest routing weights per token before normalising (absent: all
    /// experts, OneLLM's soft mixing).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_k: Option<usize>,
    /// LayerNorm epsilon of the input and output projections (PyTorch's 1e-5).
    pub layer_norm_eps: f64,
}

impl Default for UpmConfig {
    fn default() -> Self {
        Self {
            experts: 3,
            layers: 8,
            width: 1024,
            heads: 16,
            ffn_multiple_of: 256,
            norm_eps: 1e-5,
            queries: 30,
            router_ratio: 4,
            top_k: None,
            layer_norm_eps: 1e-5,
        }
    }
}

impl UpmConfig {
    /// Whether `other` describes the same shared experts (the fields every slot of a
    /// pipeline must agree on).
    pub fn same_experts(&self, other: &Self) -> bool {
        let key = |c: &Self| {
            (c.experts, c.layers, c.width, c.heads, c.ffn_multiple_of, c.norm_eps.to_bits())
        };
        key(self) == key(other)
    }

    /// Checks the numbers; errors name the field.
    pub fn validate(&self) -> Result<()> {
        let positive = [
            ("experts", self.experts),
            ("layers", self.layers),
            ("width", self.width),
            ("heads", self.heads),
            ("ffn_multiple_of", self.ffn_multiple_of),
            ("queries", self.queries),
            ("router_ratio", self.router_ratio),
        ];
        if let Some((field, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(Error::config(format!("projector.{field}"), "must be at least 1"));
        }
        if self.width % self.heads != 0 {
            return Err(Error::config(
                "projector.heads",
                format!("{} heads do not divide the width {}", self.heads, self.width),
            ));
        }
        match self.top_k {
            Some(k) if k == 0 || k > self.experts => Err(Error::config(
                "projector.top_k",
                format!("must be from 1 to the {} experts, not {k}", self.experts),
            )),
            _ => Ok(()),
        }
    }
}

/// One modality's view of a UPM: the shared experts and its own route.
#[derive(Debug, Clone)]
pub struct UpmProjector {
    experts: Arc<UpmExperts>,
    route: UpmRoute,
}

impl UpmProjector {
    /// A UPM with experts of its own (variables at `vb`'s root beside the route's): the
    /// layout of one OneLLM modality. A pipeline shares one [`UpmExperts`] between its
    /// slots with [`Self::with_experts`] instead.
    pub fn new(cfg: &UpmConfig, in_dim: usize, out_dim: usize, vb: VarBuilder) -> Result<Self> {
        let experts = Arc::new(UpmExperts::new(cfg, vb.clone())?);
        Self::with_experts(experts, cfg, in_dim, out_dim, vb)
    }

    /// The route of one modality (variables under `vb`) over shared `experts`, which must
    /// match `cfg`'s expert settings.
    pub fn with_experts(
        experts: Arc<UpmExperts>,
        cfg: &UpmConfig,
        in_dim: usize,
        out_dim: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        if !experts.config().same_experts(cfg) {
            return Err(Error::config(
                "projector",
                "this slot's expert settings differ from the shared experts'",
            ));
        }
        Ok(Self { route: UpmRoute::new(cfg, in_dim, out_dim, vb)?, experts })
    }

    /// The projected tokens and the routing weights at the query positions.
    ///
    /// features: tokens [b, n, in_dim], mask [b, n] -> ([b, Q + 2, out_dim], [b, Q, K])
    pub fn forward(&self, features: &Features) -> Result<(Tensor, Tensor)> {
        self.route.forward(&self.experts, features)
    }
}

impl InputProjector for UpmProjector {
    fn in_dim(&self) -> usize {
        self.route.in_dim()
    }

    fn out_dim(&self) -> usize {
        self.route.out_dim()
    }

    /// features [b, n, in_dim] -> [b, Q + 2, out_dim], no mask (every position is real)
    fn project(&self, features: &Features) -> Result<Features> {
        Features::new(self.forward(features)?.0, None)
    }

    fn routing_weights(&self, features: &Features) -> Result<Option<Tensor>> {
        Ok(Some(self.forward(features)?.1))
    }
}

#[cfg(test)]
mod tests;
