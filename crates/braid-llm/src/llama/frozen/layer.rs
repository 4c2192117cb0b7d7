//! One LLaMA decoder layer for frozen inference: the same maths as
//! `braid_nn::PreNormBlock` with LLaMA names, built from candle's fused kernels (RMSNorm,
//! rotary, softmax; none has a backward pass), `QMatMul` projections and a KV buffer
//! written in place. Grouped-query attention multiplies each KV head with its group of
//! query heads at once instead of repeating keys and values. Projections may carry LoRA
//! updates ([`super::lora`]).
//! Reference: `transformers.models.llama.modeling_llama.LlamaDecoderLayer`; llama.cpp
//! `llm_build_llama`.

use braid_core::Result;
use braid_nn::KvCache;
use candle_core::{Tensor, D};
use candle_nn::ops::rms_norm;

use super::attend::{attend, MAX_SCORES};
use super::fused::Fused;
use super::load::Loader;
use super::lora::Projection;
use super::rope::Rope;
use crate::LlamaConfig;

/// Norm weights, projections and head layout of one layer.
#[derive(Debug, Clone)]
pub(crate) struct FrozenLayer {
    input_norm: Tensor,
    post_norm: Tensor,
    /// Sandwich norms of the attention's and the MLP's outputs (GLM-4-0414), if any.
    sandwich: Option<(Tensor, Tensor)>,
    eps: f32,
    qkv: Fused,
    o: Projection,
    /// Gate and up projections: two parts, or one stacked part (GLM) split in half.
    gate_up: Fused,
    inter: usize,
    down: Projection,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
}

impl FrozenLayer {
    /// Loads `{prefix}.self_attn.*`, `{prefix}.mlp.*` and the norms, named as
    /// `cfg.block_names()` says.
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
        let names = cfg.block_names();
        let mlp = |n: &str| p(&format!("mlp.{n}"));
        let gate_up = Fused::new(match names.mlp_names.gate {
            Some(gate) => vec![
                ld.part(&mlp(gate), (inter, h), false)?,
                ld.part(&mlp(names.mlp_names.up), (inter, h), false)?,
            ],
            None => vec![ld.part(&mlp(names.mlp_names.up), (2 * inter, h), false)?],
        })?;
        let sandwich = match names.post_norms {
            Some((a, m)) => Some((
                ld.vector(&p(&format!("{a}.weight")), h)?,
                ld.vector(&p(&format!("{m}.weight")), h)?,
            )),
            None => None,
        };
        Ok(Self {
            input_norm: ld.vector(&p("input_layernorm.weight"), h)?,
            post_norm: ld.vector(&p("post_attention_layernorm.weight"), h)?,
            sandwich,
            eps: cfg.rms_norm_eps as f32,
            qkv,
            o: ld.projection(&p("self_attn.o_proj"), (h, hd))?,
            gate_up,
            inter,
            down: ld.projection(&mlp(names.mlp_names.down), (h, inter))?,
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
        kv: &mut KvCache,
    ) -> Result<Tensor> {
        let h = rms_norm(x, &self.input_norm, self.eps)?;
        let mut a = self.attention(&h, bias, rope, kv)?;
        if let Some((norm, _)) = &self.sandwich {
            a = rms_norm(&a, norm, self.eps)?;
        }
        let x = (x + a)?;
        let h = rms_norm(&x, &self.post_norm, self.eps)?;
        let gu = self.gate_up.forward(&h)?;
        let (gate, up) = match gu.as_slice() {
            [gate, up] => (gate.clone(), up.clone()),
            [stacked] => (
                stacked.narrow(D::Minus1, 0, self.inter)?,
                stacked.narrow(D::Minus1, self.inter, self.inter)?,
            ),
            _ => {
                return Err(braid_core::Error::Invalid(
                    "llama layer: gate/up not in one or two parts".into(),
                ))
            }
        };
        let mut m = self.down.forward(&(gate.silu()? * up)?)?;
        if let Some((_, norm)) = &self.sandwich {
            m = rms_norm(&m, norm, self.eps)?;
        }
        Ok((&x + m)?)
    }

    /// x: [batch, seq, hidden] (normed) -> [batch, seq, hidden]
    fn attention(
        &self,
        x: &Tensor,
        bias: Option<&Tensor>,
        rope: &Rope,
        kv: &mut KvCache,
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
