//! One LLaMA decoder layer for frozen inference: the same maths as
//! `braid_nn::PreNormBlock` with LLaMA names, built from candle's fused kernels (RMSNorm,
//! rotary, softmax; none has a backward pass), `QMatMul` projections and a KV buffer
//! written in place. Grouped-query attention multiplies each KV head with its group of
//! query heads at once instead of repeating keys and values. Projections may carry LoRA
//! updates ([`super::lora`]).
//! Reference: `transformers.models.llama.modeling_llama.LlamaDecoderLayer`; llama.cpp
//! `llm_build_llama`.

use braid_core::Result;
use candle_core::Tensor;
use candle_nn::ops::rms_norm;

use super::attend::{attend, MAX_SCORES};
use super::fused::Fused;
use super::load::Loader;
use super::lora::Projection;
use super::rope::Rope;
use crate::kv::KvBuffer;
use crate::LlamaConfig;

/// Norm weights, projections and head layout of one layer.
#[derive(Debug, Clone)]
pub(crate) struct FrozenLayer {
    input_norm: Tensor,
    post_norm: Tensor,
    eps: f32,
    qkv: Fused,
    o: Projection,
    gate_up: Fused,
    down: Projection,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
}

impl FrozenLayer {
    /// Loads `{prefix}.self_attn.*`, `{prefix}.mlp.*` and the two norms.
    pub(crate) fn load(ld: &mut Loader, prefix: &str, cfg: &LlamaConfig) -> Result<Self> {
        let (h, hd, kvd, inter) = (
            cfg.hidden_size,
            cfg.num_attention_heads * cfg.head_dim(),
            cfg.kv_heads() * cfg.head_dim(),
            cfg.intermediate_size,
        );
        let bias = cfg.qkv_bias();
        let p = |n: &str| format!("{prefix}.{n}");
        let qkv = Fused::new(vec![
            ld.part(&p("self_attn.q_proj"), (hd, h), bias)?,
            ld.part(&p("self_attn.k_proj"), (kvd, h), bias)?,
            ld.part(&p("self_attn.v_proj"), (kvd, h), bias)?,
        ])?;
        let gate_up = Fused::new(vec![
            ld.part(&p("mlp.gate_proj"), (inter, h), false)?,
            ld.part(&p("mlp.up_proj"), (inter, h), false)?,
        ])?;
        Ok(Self {
            input_norm: ld.vector(&p("input_layernorm.weight"), h)?,
            post_norm: ld.vector(&p("post_attention_layernorm.weight"), h)?,
            eps: cfg.rms_norm_eps as f32,
            qkv,
            o: ld.projection(&p("self_attn.o_proj"), (h, hd))?,
            gate_up,
            down: ld.projection(&p("mlp.down_proj"), (h, inter))?,
            heads: cfg.num_attention_heads,
            kv_heads: cfg.kv_heads(),
            head_dim: cfg.head_dim(),
        })
    }

    /// x: [batch, seq, hidden]; bias: additive attention bias [batch or 1, 1, group * seq,
    /// cached + seq] (rows ordered by query head in group, then position) -> [batch, seq, hidden]
    pub(crate) fn forward(
        &self,
        x: &Tensor,
        bias: Option<&Tensor>,
        rope: &Rope,
        kv: &mut KvBuffer,
    ) -> Result<Tensor> {
        let h = rms_norm(x, &self.input_norm, self.eps)?;
        let x = (x + self.attention(&h, bias, rope, kv)?)?;
        let h = rms_norm(&x, &self.post_norm, self.eps)?;
        let gu = self.gate_up.forward(&h)?;
        let (gate, up) = (&gu[0], &gu[1]);
        let act = (gate.silu()? * up)?;
        Ok((&x + self.down.forward(&act)?)?)
    }

    /// x: [batch, seq, hidden] (normed) -> [batch, seq, hidden]
    fn attention(
        &self,
        x: &Tensor,
        bias: Option<&Tensor>,
        rope: &Rope,
        kv: &mut KvBuffer,
    ) -> Result<Tensor> {
        let (b, t, _) = x.dims3()?;
        let d = self.head_dim;
        let qkv = self.qkv.forward(x)?;
        let split = |y: &Tensor, n: usize| -> Result<Tensor> {
            Ok(y.reshape((b, t, n, d))?.transpose(1, 2)?.contiguous()?)
        };
        let offset = kv.len();
        let q = rope.apply(&split(&qkv[0], self.heads)?, offset)?;
        let k = rope.apply(&split(&qkv[1], self.kv_heads)?, offset)?;
        let v = split(&qkv[2], self.kv_heads)?;
        let (k, v) = kv.append(&k, &v)?;
        let group = self.heads / self.kv_heads;
        // [b, heads, t, d] -> [b, kv_heads, group * t, d]: query head h uses KV head h / group.
        let q = q.reshape((b, self.kv_heads, group * t, d))?;
        let scale = 1.0 / (d as f64).sqrt();
        let out = attend(&q, &k, &v, bias, scale, MAX_SCORES)?;
        let out =
            out.reshape((b, self.heads, t, d))?.transpose(1, 2)?.reshape((b, t, self.heads * d))?;
        self.o.forward(&out)
    }
}
