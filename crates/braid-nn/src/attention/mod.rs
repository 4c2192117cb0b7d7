//! Scaled dot-product multi-head attention (Vaswani et al. 2017) with causal and padding
//! masks, grouped-query heads (Ainslie et al. 2023), optional RoPE and a KV cache;
//! reference: `transformers.models.llama.modeling_llama.LlamaAttention`. Any projection
//! may carry LoRA ([`Attention::new_with_lora`]; PEFT `lora.Linear`).

mod config;
mod kv_cache;
pub mod mask;

use std::sync::Arc;

use braid_core::{Error, Result};
use candle_core::Tensor;
use candle_nn::VarBuilder;

pub use config::{AttentionConfig, AttentionNames};
pub use kv_cache::KvCache;

use crate::{softmax_last_dim, LoraSpec, Proj, RotaryEmbedding};

/// Multi-head attention with projections named by [`AttentionNames`].
#[derive(Debug, Clone)]
pub struct Attention {
    q: Proj,
    k: Proj,
    v: Proj,
    o: Proj,
    cfg: AttentionConfig,
    names: AttentionNames,
    rope: Option<Arc<RotaryEmbedding>>,
}

impl Attention {
    /// Every projection, by its name (`q_proj`, ..., as [`AttentionNames`] says), for
    /// re-parameterising them in place (Multimodal Pathway).
    pub fn projections_mut(&mut self) -> [(&'static str, &mut Proj); 4] {
        let n = self.names;
        [(n.q, &mut self.q), (n.k, &mut self.k), (n.v, &mut self.v), (n.o, &mut self.o)]
    }

    /// Builds the four projections under `vb` with the names in `names`.
    pub fn new(cfg: AttentionConfig, names: AttentionNames, vb: VarBuilder) -> Result<Self> {
        Self::new_with_lora(cfg, names, vb, None)
    }

    /// As [`Self::new`], wrapping the projections `lora` targets with LoRA (variables under
    /// `lora.vb`, which sits at the same position as `vb`).
    pub fn new_with_lora(
        cfg: AttentionConfig,
        names: AttentionNames,
        vb: VarBuilder,
        lora: Option<&LoraSpec>,
    ) -> Result<Self> {
        if cfg.heads == 0 || cfg.kv_heads == 0 || cfg.heads % cfg.kv_heads != 0 {
            return Err(Error::config(
                "attention.kv_heads",
                format!("{} heads cannot be shared evenly by {} KV heads", cfg.heads, cfg.kv_heads),
            ));
        }
        let (q_dim, kv_dim) = (cfg.heads * cfg.head_dim, cfg.kv_heads * cfg.head_dim);
        let kv_in = cfg.context.unwrap_or(cfg.hidden);
        Ok(Self {
            q: Proj::new(cfg.hidden, q_dim, cfg.bias, &vb, names.q, lora)?,
            k: Proj::new(kv_in, kv_dim, cfg.bias, &vb, names.k, lora)?,
            v: Proj::new(kv_in, kv_dim, cfg.bias, &vb, names.v, lora)?,
            o: Proj::new(q_dim, cfg.hidden, cfg.out_bias, &vb, names.o, lora)?,
            cfg,
            names,
            rope: None,
        })
    }

    /// The four projections by checkpoint name (q, k, v, o), for merging and export.
    pub fn projections(&self) -> [(&'static str, &Proj); 4] {
        let n = &self.names;
        [(n.q, &self.q), (n.k, &self.k), (n.v, &self.v), (n.o, &self.o)]
    }

    /// Rotates queries and keys with `rope` (one table shared by all layers).
    pub fn with_rope(mut self, rope: Arc<RotaryEmbedding>) -> Self {
        self.rope = Some(rope);
        self
    }

    /// The configuration.
    pub fn config(&self) -> &AttentionConfig {
        &self.cfg
    }

    /// Self-attention. With a cache, `x` holds only the new positions and `mask` covers
    /// cached plus new keys; the output equals the matching rows of a full forward.
    ///
    /// x: [batch, seq, hidden]; mask: [batch, cached + seq] of 1/0 -> [batch, seq, hidden]
    pub fn forward(
        &self,
        x: &Tensor,
        mask: Option<&Tensor>,
        cache: Option<&mut KvCache>,
    ) -> Result<Tensor> {
        let offset = cache.as_ref().map_or(0, |c| c.len());
        let q = self.heads(&self.q, x, self.cfg.heads)?;
        let mut k = self.heads(&self.k, x, self.cfg.kv_heads)?;
        let mut v = self.heads(&self.v, x, self.cfg.kv_heads)?;
        let q = self.rotate(&q, offset)?;
        k = self.rotate(&k, offset)?;
        if let Some(cache) = cache {
            (k, v) = cache.append(&k, &v)?;
        }
        self.attend(&q, &k, &v, mask, self.cfg.causal)
    }

    /// Cross-attention from `x` to `context` (resamplers, Q-Former, the diffusion UNet's
    /// text condition): no RoPE, no causal mask, no cache.
    ///
    /// x: [batch, seq, hidden]; context: [batch, ctx, context width]; mask: [batch, ctx] of 1/0
    /// -> [batch, seq, hidden]
    pub fn forward_cross(
        &self,
        x: &Tensor,
        context: &Tensor,
        mask: Option<&Tensor>,
    ) -> Result<Tensor> {
        let q = self.heads(&self.q, x, self.cfg.heads)?;
        let k = self.heads(&self.k, context, self.cfg.kv_heads)?;
        let v = self.heads(&self.v, context, self.cfg.kv_heads)?;
        self.attend(&q, &k, &v, mask, false)
    }

    /// x: [batch, seq, hidden] -> [batch, n_heads, seq, head_dim]
    fn heads(&self, proj: &Proj, x: &Tensor, n_heads: usize) -> Result<Tensor> {
        let (b, t, _) = x.dims3()?;
        let y = proj.forward(x)?.reshape((b, t, n_heads, self.cfg.head_dim))?;
        Ok(y.transpose(1, 2)?.contiguous()?)
    }

    fn rotate(&self, x: &Tensor, offset: usize) -> Result<Tensor> {
        match &self.rope {
            Some(rope) => rope.apply(x, offset),
            None => Ok(x.clone()),
        }
    }

    /// q: [b, heads, tq, d]; k, v: [b, kv_heads, tk, d] -> [b, tq, hidden]
    fn attend(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        mask: Option<&Tensor>,
        causal: bool,
    ) -> Result<Tensor> {
        let (b, _, tq, _) = q.dims4()?;
        let tk = k.dim(2)?;
        let n_rep = self.cfg.heads / self.cfg.kv_heads;
        let scale = 1.0 / (self.cfg.head_dim as f64).sqrt();
        if crate::fused::applies(&[q, k, v]) {
            let m = mask::softmax_mask(causal, mask, tq, tk)?;
            return self.o.forward(&crate::fused::attention(q, k, v, scale, &m)?);
        }
        let (k, v) = (repeat_kv(k, n_rep)?, repeat_kv(v, n_rep)?);
        let mut scores = (q.matmul(&k.t()?)? * scale)?;
        if let Some(keep) = mask::keep_mask(causal, mask, tq, tk, q.device())? {
            scores = mask::apply(&scores, &keep)?;
        }
        let out = softmax_last_dim(&scores)?.matmul(&v)?;
        let out = out.transpose(1, 2)?.reshape((b, tq, self.cfg.heads * self.cfg.head_dim))?;
        self.o.forward(&out)
    }
}

/// Repeats each KV head `n_rep` times in place (head h of the queries uses KV head
/// `h / n_rep`, as Hugging Face's `repeat_kv`).
///
/// x: [b, kv_heads, t, d] -> [b, kv_heads * n_rep, t, d]
fn repeat_kv(x: &Tensor, n_rep: usize) -> Result<Tensor> {
    if n_rep == 1 {
        return Ok(x.clone());
    }
    let (b, h, t, d) = x.dims4()?;
    Ok(x.unsqueeze(2)?.broadcast_as((b, h, n_rep, t, d))?.reshape((b, h * n_rep, t, d))?)
}

#[cfg(test)]
mod tests;
