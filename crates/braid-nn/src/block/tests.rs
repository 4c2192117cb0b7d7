use std::sync::Arc;

use braid_core::Result;
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};

use super::*;
use crate::fixtures;
use crate::gradcheck::{
    check_all_vars_get_grad, check_param_grads, finite_difference_check, varmap_tensors,
};
use crate::{Activation, NormKind, RotaryEmbedding};

fn llama_cfg() -> BlockConfig {
    BlockConfig {
        attention: AttentionConfig {
            hidden: 8,
            heads: 4,
            kv_heads: 2,
            head_dim: 4,
            bias: false,
            out_bias: false,
            causal: true,
            context: None,
        },
        mlp: MlpConfig {
            hidden: 8,
            intermediate: 12,
            activation: Activation::Silu,
            gated: true,
            bias: false,
        },
        norm: NormConfig { kind: NormKind::RmsNorm, eps: 1e-6 },
    }
}

fn bert_cfg() -> BlockConfig {
    BlockConfig {
        attention: AttentionConfig::new(8, 2),
        mlp: MlpConfig {
            hidden: 8,
            intermediate: 12,
            activation: Activation::Gelu,
            gated: false,
            bias: true,
        },
        norm: NormConfig { kind: NormKind::LayerNorm, eps: 1e-12 },
    }
}

fn llama_block(vb: VarBuilder, dtype: DType) -> Result<PreNormBlock> {
    let rope = Arc::new(RotaryEmbedding::new(4, 16, 10000.0, dtype, &Device::Cpu)?);
    Ok(PreNormBlock::new(llama_cfg(), BlockNames::LLAMA, vb)?.with_rope(rope))
}

#[test]
fn matches_pytorch() -> Result<()> {
    let f = fixtures::load("block")?;
    let (x, mask) = (f.get("x")?, f.get("mask")?);
    let llama = llama_block(f.vb().pp("llama"), DType::F32)?;
    fixtures::check(
        &llama.forward(&x, Some(&mask), None)?,
        &f.get("llama_out")?,
        "LLaMA pre-norm block",
    )?;
    let bert = PostNormBlock::new(bert_cfg(), BlockNames::BERT, f.vb().pp("bert"))?;
    fixtures::check(
        &bert.forward(&x, Some(&mask), None)?,
        &f.get("bert_out")?,
        "BERT post-norm block",
    )?;
    f.assert_all_used()
}

#[test]
fn clip_names_build_a_pre_norm_block() -> Result<()> {
    let vm = VarMap::new();
    let cfg = BlockConfig { norm: NormConfig::default(), ..bert_cfg() };
    PreNormBlock::new(
        cfg,
        BlockNames::CLIP,
        VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu),
    )?;
    let mut names: Vec<_> = vm
        .data()
        .lock()
        .map_err(|e| braid_core::Error::Invalid(e.to_string()))?
        .keys()
        .cloned()
        .collect();
    names.sort();
    assert!(names.contains(&"layer_norm1.weight".to_string()), "{names:?}");
    assert!(names.contains(&"self_attn.out_proj.bias".to_string()), "{names:?}");
    assert!(names.contains(&"mlp.fc2.weight".to_string()), "{names:?}");
    Ok(())
}

#[test]
fn every_variable_gets_a_gradient() -> Result<()> {
    let x = Tensor::randn(0f32, 1., (2, 3, 8), &Device::Cpu)?;
    let vm = VarMap::new();
    let block = llama_block(VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu), DType::F32)?;
    check_all_vars_get_grad(&vm, &block.forward(&x, None, None)?.sqr()?.sum_all()?)?;
    let vm = VarMap::new();
    let block = PostNormBlock::new(
        bert_cfg(),
        BlockNames::BERT,
        VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu),
    )?;
    check_all_vars_get_grad(&vm, &block.forward(&x, None, None)?.sqr()?.sum_all()?)
}

#[test]
fn gradients_match_finite_differences() -> Result<()> {
    let dev = Device::Cpu;
    let x = Tensor::randn(0f64, 1., (1, 3, 8), &dev)?;
    let vm = VarMap::new();
    let build = |vb: VarBuilder| llama_block(vb, DType::F64);
    let block = build(VarBuilder::from_varmap(&vm, DType::F64, &dev))?;
    finite_difference_check(|x| block.forward(x, None, None), &x, 1e-6, 1e-5)?;
    check_param_grads(&varmap_tensors(&vm)?, build, |b| b.forward(&x, None, None), 1e-6, 1e-5)?;
    let vm = VarMap::new();
    let build = |vb: VarBuilder| PostNormBlock::new(bert_cfg(), BlockNames::BERT, vb);
    let block = build(VarBuilder::from_varmap(&vm, DType::F64, &dev))?;
    finite_difference_check(|x| block.forward(x, None, None), &x, 1e-6, 1e-5)?;
    check_param_grads(&varmap_tensors(&vm)?, build, |b| b.forward(&x, None, None), 1e-6, 1e-5)
}

#[test]
fn lora_variables_live_in_their_own_map_and_all_get_gradients() -> Result<()> {
    use crate::{LoraConfig, LoraSpec};
    let dev = Device::Cpu;
    let x = Tensor::randn(0f32, 1., (2, 3, 8), &dev)?;
    let lora_cfg = LoraConfig { rank: 2, alpha: 4.0 };
    let (base, lora) = (VarMap::new(), VarMap::new());
    let spec = LoraSpec::new(
        lora_cfg,
        &LoraSpec::LLAMA_ALL,
        VarBuilder::from_varmap(&lora, DType::F32, &dev),
    );
    let rope = Arc::new(RotaryEmbedding::new(4, 16, 10000.0, DType::F32, &dev)?);
    let vb = VarBuilder::from_varmap(&base, DType::F32, &dev);
    let block = PreNormBlock::new_with_lora(llama_cfg(), BlockNames::LLAMA, vb, Some(&spec))?
        .with_rope(rope);
    let projections: Vec<_> =
        block.projections().into_iter().map(|(n, p)| (n, p.lora().is_some())).collect();
    assert_eq!(projections.len(), 7);
    assert!(projections.iter().all(|(_, has)| *has), "{projections:?}");
    assert_eq!(projections[0].0, "self_attn.q_proj");
    assert_eq!(projections[6].0, "mlp.down_proj");
    let names: Vec<_> = lora
        .data()
        .lock()
        .map_err(|e| braid_core::Error::Invalid(e.to_string()))?
        .keys()
        .cloned()
        .collect();
    assert_eq!(names.len(), 14);
    assert!(names.iter().all(|n| n.contains(".lora_A.") || n.contains(".lora_B.")), "{names:?}");
    assert!(names.contains(&"mlp.gate_proj.lora_B.weight".to_string()), "{names:?}");
    // B starts at zero (A would get no gradient); move it off zero first.
    for var in lora.all_vars() {
        var.set(&var.as_tensor().randn_like(0., 0.1)?)?;
    }
    check_all_vars_get_grad(&lora, &block.forward(&x, None, None)?.sqr()?.sum_all()?)?;
    // BERT names: only the targets named get LoRA.
    let lora = VarMap::new();
    let spec = LoraSpec::new(
        lora_cfg,
        &["self.query", "intermediate.dense"],
        VarBuilder::from_varmap(&lora, DType::F32, &dev),
    );
    let vb = VarBuilder::from_varmap(&base, DType::F32, &dev).pp("bert");
    PostNormBlock::new_with_lora(bert_cfg(), BlockNames::BERT, vb, Some(&spec.pp("bert")))?;
    let mut names: Vec<_> = lora
        .data()
        .lock()
        .map_err(|e| braid_core::Error::Invalid(e.to_string()))?
        .keys()
        .cloned()
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "bert.attention.self.query.lora_A.weight",
            "bert.attention.self.query.lora_B.weight",
            "bert.intermediate.dense.lora_A.weight",
            "bert.intermediate.dense.lora_B.weight"
        ]
    );
    Ok(())
}
