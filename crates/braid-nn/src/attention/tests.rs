use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};

use super::*;
use crate::fixtures;
use crate::gradcheck::{
    check_all_vars_get_grad, check_param_grads, finite_difference_check, varmap_tensors,
};

fn gqa_cfg() -> AttentionConfig {
    AttentionConfig {
        hidden: 8,
        heads: 4,
        kv_heads: 2,
        head_dim: 4,
        bias: false,
        out_bias: false,
        causal: true,
        context: None,
    }
}

fn rope(dtype: DType) -> Result<Arc<RotaryEmbedding>> {
    Ok(Arc::new(RotaryEmbedding::new(4, 16, 10000.0, dtype, &Device::Cpu)?))
}

#[test]
fn matches_pytorch() -> Result<()> {
    let f = fixtures::load("attention")?;
    let (x, mask) = (f.get("x")?, f.get("mask")?);
    let mha = Attention::new(AttentionConfig::new(8, 2), AttentionNames::CLIP, f.vb().pp("mha"))?;
    fixtures::check(
        &mha.forward(&x, Some(&mask), None)?,
        &f.get("mha_out")?,
        "padding-masked MHA",
    )?;
    let gqa = Attention::new(gqa_cfg(), AttentionNames::LLAMA, f.vb().pp("gqa"))?
        .with_rope(rope(DType::F32)?);
    fixtures::check(&gqa.forward(&x, Some(&mask), None)?, &f.get("gqa_out")?, "causal GQA + RoPE")?;
    f.assert_all_used()
}

#[test]
fn cached_steps_equal_full_forward() -> Result<()> {
    let dev = Device::Cpu;
    let vm = VarMap::new();
    let vb = VarBuilder::from_varmap(&vm, DType::F32, &dev);
    let attn = Attention::new(gqa_cfg(), AttentionNames::LLAMA, vb)?.with_rope(rope(DType::F32)?);
    let x = Tensor::randn(0f32, 1., (2, 6, 8), &dev)?;
    let mask = Tensor::new(&[[1u32, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]], &dev)?;
    let full = attn.forward(&x, Some(&mask), None)?;
    let mut cache = KvCache::new();
    let mut steps = Vec::new();
    for (start, len) in [(0, 3), (3, 1), (4, 2)] {
        let m = mask.narrow(1, 0, start + len)?;
        steps.push(attn.forward(&x.narrow(1, start, len)?, Some(&m), Some(&mut cache))?);
    }
    assert_eq!(cache.len(), 6);
    braid_core::testing::assert_close(&Tensor::cat(&steps, 1)?, &full, 1e-5, "cached vs full")
}

#[test]
fn uneven_grouping_is_a_config_error() {
    let vm = VarMap::new();
    let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
    let cfg = AttentionConfig { kv_heads: 3, ..gqa_cfg() };
    assert!(matches!(Attention::new(cfg, AttentionNames::LLAMA, vb), Err(Error::Config { .. })));
}

#[test]
fn every_projection_gets_a_gradient() -> Result<()> {
    let vm = VarMap::new();
    let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
    let cfg = AttentionConfig { bias: true, out_bias: true, ..gqa_cfg() };
    let attn = Attention::new(cfg, AttentionNames::BERT, vb)?.with_rope(rope(DType::F32)?);
    let x = Tensor::randn(0f32, 1., (2, 3, 8), &Device::Cpu)?;
    let y = attn.forward(&x, None, None)?;
    check_all_vars_get_grad(&vm, &(y.sqr()?.sum_all()?))
}

#[test]
fn gradients_match_finite_differences() -> Result<()> {
    let dev = Device::Cpu;
    let vm = VarMap::new();
    let cfg = AttentionConfig { bias: true, ..gqa_cfg() };
    let build = |vb: VarBuilder| {
        Ok(Attention::new(cfg, AttentionNames::LLAMA, vb)?.with_rope(rope(DType::F64)?))
    };
    let attn = build(VarBuilder::from_varmap(&vm, DType::F64, &dev))?;
    let x = Tensor::randn(0f64, 1., (2, 3, 8), &dev)?;
    let mask = Tensor::new(&[[1u32, 1, 1], [1, 1, 0]], &dev)?;
    finite_difference_check(|x| attn.forward(x, Some(&mask), None), &x, 1e-6, 1e-5)?;
    let context = Tensor::randn(0f64, 1., (2, 4, 8), &dev)?;
    finite_difference_check(|c| attn.forward_cross(&x, c, None), &context, 1e-6, 1e-5)?;
    check_param_grads(
        &varmap_tensors(&vm)?,
        build,
        |a| a.forward(&x, Some(&mask), None),
        1e-6,
        1e-5,
    )
}
