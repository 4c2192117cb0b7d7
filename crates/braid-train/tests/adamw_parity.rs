//! Step parity with PyTorch, in the manner of llm.c's `test_gpt2.c`: a 2-layer MLP
//! classifier trained 5 optimiser steps (2 accumulated micro-batches each, clipping to
//! norm 0.5, AdamW with two parameter groups, cosine schedule with 2 warmup steps) must
//! reproduce `scripts/fixtures/train_adamw.py`: learning rates, losses, pre-clip gradient
//! norms, the step-1 gradients and the final weights, each within 1e-5 (f32).
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::ops::Range;

use braid_core::testing::{assert_close, max_abs_diff};
use braid_nn::{cross_entropy, Activation, LayerNorm, Linear};
use braid_train::{clip_grad_norm, AdamW, AdamWConfig, CosineWithWarmup, GradAccumulator, Grads};
use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{VarBuilder, VarMap};

const TOL: f32 = 1e-5;
const NAMES: [&str; 6] =
    ["fc1.weight", "fc1.bias", "norm.weight", "norm.bias", "fc2.weight", "fc2.bias"];

struct Mlp {
    fc1: Linear,
    norm: LayerNorm,
    fc2: Linear,
}

impl Mlp {
    /// x: [batch, 8] -> [batch, 4]
    fn forward(&self, x: &Tensor) -> Tensor {
        let h = self.norm.forward(&self.fc1.forward(x).unwrap()).unwrap();
        self.fc2.forward(&Activation::Gelu.forward(&h).unwrap()).unwrap()
    }
}

fn fixture() -> HashMap<String, Tensor> {
    let path = format!("{}/../../fixtures/train/adamw.safetensors", env!("CARGO_MANIFEST_DIR"));
    candle_core::safetensors::load(path, &Device::Cpu).unwrap()
}

/// The model with the fixture's initial weights, and its `VarMap`.
fn model(fx: &HashMap<String, Tensor>) -> (Mlp, VarMap) {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let fc1 = Linear::new(8, 16, true, vb.pp("fc1")).unwrap();
    let norm = LayerNorm::new(16, 1e-5, vb.pp("norm")).unwrap();
    let fc2 = Linear::new(16, 4, true, vb.pp("fc2")).unwrap();
    let vars = varmap.data().lock().unwrap();
    assert_eq!(vars.len(), NAMES.len());
    for name in NAMES {
        vars[name].set(&fx[&format!("init.{name}")]).unwrap();
    }
    drop(vars);
    (Mlp { fc1, norm, fc2 }, varmap)
}

/// Mean micro-batch gradients and mean loss of optimiser step `step`.
fn accumulate(
    model: &Mlp,
    varmap: &VarMap,
    fx: &HashMap<String, Tensor>,
    step: usize,
) -> (Grads, f32) {
    let (x, y) = (fx["x"].get(step).unwrap(), fx["y"].get(step).unwrap());
    let micro = x.dim(0).unwrap();
    let mut acc = GradAccumulator::new();
    let mut loss_sum = 0f32;
    for m in 0..micro {
        let loss =
            cross_entropy(&model.forward(&x.get(m).unwrap()), &y.get(m).unwrap(), None).unwrap();
        loss_sum += loss.to_scalar::<f32>().unwrap();
        acc.add(&Grads::from_store(varmap, &loss.backward().unwrap()).unwrap()).unwrap();
    }
    (acc.finish().unwrap(), loss_sum / micro as f32)
}

fn close(got: f64, want: f32, what: &str) -> f32 {
    let d = (got as f32 - want).abs();
    assert!(d <= TOL, "{what}: {got} vs {want} (diff {d})");
    d
}

/// Largest differences seen against the fixture.
#[derive(Default)]
struct Worst {
    loss: f32,
    grad: f32,
    norm: f32,
}

/// Runs optimiser steps `steps`, checking lr, loss, step-1 grads and grad norm of each.
fn train(
    model: &Mlp,
    varmap: &VarMap,
    opt: &mut AdamW,
    fx: &HashMap<String, Tensor>,
    steps: Range<usize>,
) -> Worst {
    let sched = CosineWithWarmup { base_lr: 1e-2, warmup_steps: 2, total_steps: 5 };
    let (lrs, losses, norms) = (vec1(fx, "lr"), vec1(fx, "loss"), vec1(fx, "grad_norm"));
    let mut worst = Worst::default();
    for step in steps {
        close(sched.lr(step), lrs[step], &format!("lr {step}"));
        opt.set_lr(sched.lr(step));
        let (mut grads, loss) = accumulate(model, varmap, fx, step);
        worst.loss = worst.loss.max(close(loss as f64, losses[step], &format!("loss {step}")));
        if step == 0 {
            for name in NAMES {
                let (got, want) = (grads.get(name).unwrap(), &fx[&format!("grad1.{name}")]);
                worst.grad = worst.grad.max(max_abs_diff(got, want).unwrap());
                assert_close(got, want, TOL, name).unwrap();
            }
        }
        let norm = clip_grad_norm(&mut grads, 0.5).unwrap();
        worst.norm = worst.norm.max(close(norm, norms[step], &format!("grad norm {step}")));
        opt.step(&grads).unwrap();
    }
    worst
}

fn optimiser(varmap: &VarMap) -> AdamW {
    AdamW::new(varmap, AdamWConfig { lr: 1e-2, weight_decay: 0.1, ..Default::default() }).unwrap()
}

fn weights(varmap: &VarMap) -> HashMap<String, Tensor> {
    let vars = varmap.data().lock().unwrap();
    NAMES.iter().map(|n| (n.to_string(), vars[*n].as_tensor().copy().unwrap())).collect()
}

#[test]
fn five_adamw_steps_match_pytorch() {
    let fx = fixture();
    let (model, varmap) = model(&fx);
    let mut opt = optimiser(&varmap);
    for name in NAMES {
        let want = if name.ends_with("weight") && !name.starts_with("norm") { 0.1 } else { 0.0 };
        assert_eq!(opt.weight_decay_of(name), Some(want), "{name}");
    }
    let worst = train(&model, &varmap, &mut opt, &fx, 0..5);
    let mut worst_w = 0f32;
    for (name, got) in weights(&varmap) {
        let want = &fx[&format!("final.{name}")];
        worst_w = worst_w.max(max_abs_diff(&got, want).unwrap());
        assert_close(&got, want, TOL, &name).unwrap();
    }
    println!(
        "max |diff|: loss {:.2e}, step-1 grads {:.2e}, grad norm {:.2e}, final weights {worst_w:.2e}",
        worst.loss, worst.grad, worst.norm
    );
}

/// Weights and optimiser state saved after step 2 and loaded into a fresh model and
/// optimiser continue exactly as the uninterrupted run (bit for bit), which in turn
/// matches PyTorch.
#[test]
fn resuming_from_saved_state_continues_identically() {
    let fx = fixture();
    let (mlp, varmap) = model(&fx);
    let mut opt = optimiser(&varmap);
    train(&mlp, &varmap, &mut opt, &fx, 0..2);
    let dir = tempfile::tempdir().unwrap();
    varmap.save(dir.path().join("model.safetensors")).unwrap();
    opt.save_state(&dir.path().join("optim.safetensors")).unwrap();
    train(&mlp, &varmap, &mut opt, &fx, 2..5);

    let (resumed, mut resumed_vm) = model(&fx);
    resumed_vm.load(dir.path().join("model.safetensors")).unwrap();
    let mut resumed_opt = optimiser(&resumed_vm);
    resumed_opt.load_state(&dir.path().join("optim.safetensors")).unwrap();
    train(&resumed, &resumed_vm, &mut resumed_opt, &fx, 2..5);
    let (a, b) = (weights(&varmap), weights(&resumed_vm));
    for name in NAMES {
        assert_eq!(max_abs_diff(&a[name], &b[name]).unwrap(), 0.0, "{name}");
    }
}

fn vec1(fx: &HashMap<String, Tensor>, name: &str) -> Vec<f32> {
    fx[name].to_dtype(DType::F32).unwrap().to_vec1().unwrap()
}
