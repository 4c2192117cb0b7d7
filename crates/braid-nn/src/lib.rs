//! Braid's reusable layers. Every layer here is built from ops that have a backward pass,
//! so gradients reach every trainable variable: candle's fused `softmax_last_dim`,
//! `rms_norm`, `layer_norm` and rotary kernels silently stop gradients and run only where no
//! gradient can be needed; training on the CPU runs Braid's own fused kernels ([`fused`]),
//! which have one.
//!
//! Modules mirror Hugging Face checkpoint trees; sub-module names are configurable through
//! name presets ([`AttentionNames`], [`MlpNames`], [`BlockNames`]) because checkpoints differ.
//! [`gradcheck`] holds the gradient checks every crate's tests use.
#![deny(missing_docs)]

pub mod activation;
pub mod attention;
pub mod block;
pub mod conv;
pub mod conv2d;
pub mod embedding;
pub mod frozen_matmul;
pub mod fused;
pub mod gradcheck;
pub mod group_norm;
pub mod init;
pub mod linear;
pub mod lora;
pub mod loss;
pub mod mlp;
pub mod norm;
pub mod pathway;
pub mod pooling;
pub mod rope;
pub mod softmax;

#[cfg(test)]
pub(crate) mod fixtures;

pub use activation::Activation;
pub use attention::{Attention, AttentionConfig, AttentionNames, KvCache};
pub use block::{BlockConfig, BlockNames, PostNormBlock, PreNormBlock};
pub use conv::{Conv1d, Conv1dConfig};
pub use conv2d::{upsample_nearest2x, Conv2d};
pub use embedding::Embedding;
pub use group_norm::GroupNorm;
pub use linear::Linear;
pub use lora::{LoraConfig, LoraLinear, LoraSpec, Proj, PEFT_PREFIX};
pub use loss::cross_entropy;
pub use mlp::{Mlp, MlpConfig, MlpNames};
pub use norm::{LayerNorm, Norm, NormConfig, NormKind, RmsNorm};
pub use pathway::PathwayLinear;
pub use pooling::{cls_pool, last_token_pool, mean_pool, Pooling};
pub use rope::{RopeLayout, RotaryEmbedding};
pub use softmax::{log_softmax, softmax, softmax_last_dim};

use candle_core::Tensor;
use candle_nn::VarBuilder;

/// Whether a gradient could flow through an op on `ts`: any of them is a variable or was
/// computed from one.
pub fn needs_grad(ts: &[&Tensor]) -> bool {
    ts.iter().any(|t| t.track_op())
}

/// Whether a layer may run candle's fused kernel on `ts` (input first): no gradient can be
/// needed (frozen inference; the kernels have no backward pass), and all share a dtype the
/// kernels support (f32, f16, bf16).
pub(crate) fn fused_ok(ts: &[&Tensor]) -> bool {
    let Some(first) = ts.first() else { return false };
    let dtype = first.dtype();
    let supported = matches!(
        dtype,
        candle_core::DType::F32 | candle_core::DType::F16 | candle_core::DType::BF16
    );
    supported && !needs_grad(ts) && ts.iter().all(|t| t.dtype() == dtype)
}

/// `vb.pp(name)`, or `vb` itself when `name` is empty (a module at its parent's root, as
/// BERT's `intermediate.dense` sits beside `attention`).
pub(crate) fn sub<'a>(vb: &VarBuilder<'a>, name: &str) -> VarBuilder<'a> {
    if name.is_empty() {
        vb.clone()
    } else {
        vb.pp(name)
    }
}
