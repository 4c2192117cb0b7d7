//! Step parity for the `align` stage against PyTorch (llm.c's `test_gpt2.c` manner): an MLP
//! projector feeding 4 image tokens before 6 text tokens into the frozen tiny Llama, loss on
//! the caption only, 5 AdamW steps with accumulation, clipping and cosine warmup, must
//! reproduce `scripts/fixtures/train_align.py` within 1e-5: learning rates, losses, pre-clip
//! gradient norms, step-1 projector gradients and final projector weights. Only the
//! projector's `VarMap` is optimised; the Llama's weights are constants (frozen by
//! structure) through which the gradient still flows.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;

use braid_core::testing::{assert_close, max_abs_diff};
use braid_llm::{LanguageModel, Llama};
use braid_nn::cross_entropy;
use braid_projectors::MlpProjector;
use braid_train::{clip_grad_norm, AdamW, AdamWConfig, CosineWithWarmup, GradAccumulator, Grads};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use common::{fixture, projector, tiny_llama, PROJECTOR};

const TOL: f32 = 1e-5;
const IMG: usize = 4;

/// feats: [batch, 4, 12], ids: [batch, 6] -> caption loss []
fn loss(proj: &MlpProjector, llm: &Llama, feats: &Tensor, ids: &Tensor) -> Tensor {
    let img = proj.forward(feats).unwrap();
    let text = llm.embed_tokens(&ids.to_dtype(DType::U32).unwrap()).unwrap();
    let logits =
        llm.forward_embeds(&Tensor::cat(&[img, text], 1).unwrap(), None, None).unwrap().logits;
    let (batch, seq, _) = logits.dims3().unwrap();
    let masked = Tensor::full(-100i64, (batch, IMG + 1), &Device::Cpu).unwrap();
    let labels =
        Tensor::cat(&[masked, ids.narrow(1, 1, ids.dim(1).unwrap() - 1).unwrap()], 1).unwrap();
    let shifted = logits.narrow(1, 0, seq - 1).unwrap();
    cross_entropy(&shifted, &labels.narrow(1, 1, seq - 1).unwrap(), Some(-100)).unwrap()
}

fn accumulate(
    proj: &MlpProjector,
    llm: &Llama,
    vm: &VarMap,
    fx: &HashMap<String, Tensor>,
    step: usize,
) -> (Grads, f32) {
    let (feats, ids) = (fx["feats"].get(step).unwrap(), fx["ids"].get(step).unwrap());
    let micro = feats.dim(0).unwrap();
    let mut acc = GradAccumulator::new();
    let mut total = 0f32;
    for m in 0..micro {
        let l = loss(proj, llm, &feats.get(m).unwrap(), &ids.get(m).unwrap());
        total += l.to_scalar::<f32>().unwrap();
        acc.add(&Grads::from_store(vm, &l.backward().unwrap()).unwrap()).unwrap();
    }
    (acc.finish().unwrap(), total / micro as f32)
}

fn close(got: f64, want: f32, what: &str) -> f32 {
    let d = (got as f32 - want).abs();
    assert!(d <= TOL, "{what}: {got} vs {want} (diff {d})");
    d
}

fn vec1(fx: &HashMap<String, Tensor>, name: &str) -> Vec<f32> {
    fx[name].to_dtype(DType::F32).unwrap().to_vec1().unwrap()
}

#[test]
fn five_align_steps_match_pytorch() {
    let fx = fixture("train/align.safetensors");
    let llm = tiny_llama();
    let (proj, varmap) = projector(&fx, 12, 32);
    let mut opt =
        AdamW::new(&varmap, AdamWConfig { lr: 2e-2, weight_decay: 0.05, ..Default::default() })
            .unwrap();
    let sched = CosineWithWarmup { base_lr: 2e-2, warmup_steps: 2, total_steps: 5 };
    let (lrs, losses, norms) = (vec1(&fx, "lr"), vec1(&fx, "loss"), vec1(&fx, "grad_norm"));
    let (mut worst_loss, mut worst_grad) = (0f32, 0f32);
    for step in 0..5 {
        close(sched.lr(step), lrs[step], &format!("lr {step}"));
        opt.set_lr(sched.lr(step));
        let (mut grads, l) = accumulate(&proj, &llm, &varmap, &fx, step);
        worst_loss = worst_loss.max(close(l as f64, losses[step], &format!("loss {step}")));
        if step == 0 {
            for name in PROJECTOR {
                let (got, want) = (grads.get(name).unwrap(), &fx[&format!("grad1.{name}")]);
                worst_grad = worst_grad.max(max_abs_diff(got, want).unwrap());
                assert_close(got, want, TOL, name).unwrap();
            }
        }
        close(clip_grad_norm(&mut grads, 1.0).unwrap(), norms[step], &format!("grad norm {step}"));
        opt.step(&grads).unwrap();
    }
    let vars = varmap.data().lock().unwrap();
    let mut worst_w = 0f32;
    for name in PROJECTOR {
        let want = &fx[&format!("final.{name}")];
        worst_w = worst_w.max(max_abs_diff(vars[name].as_tensor(), want).unwrap());
        assert_close(vars[name].as_tensor(), want, TOL, name).unwrap();
    }
    println!("max |diff|: loss {worst_loss:.2e}, step-1 grads {worst_grad:.2e}, final weights {worst_w:.2e}");
}
