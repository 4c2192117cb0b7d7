//! Step parity for the `align` stage with a real vision tower (issue 7), against
//! `scripts/fixtures/train_align_vit.py`: a frozen tiny CLIP ViT read out as LLaVA does
//! (`hidden_states[-2]` without the class token), an MLP projector putting its 16 tokens
//! before 6 text tokens into the frozen tiny Llama, loss on the caption only, 5 AdamW steps
//! with accumulation, clipping and cosine warmup. Learning rates, losses, pre-clip gradient
//! norms, step-1 projector gradients and final projector weights must match within 1e-4.
//! The ViT and the Llama come from their checkpoints as constants (frozen by structure, as
//! braid loads a pretrained tower); only the projector's `VarMap` is optimised.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use std::collections::HashMap;

use braid_core::checkpoint::Checkpoint;
use braid_core::testing::{assert_close, max_abs_diff};
use braid_encoders::image::{Vit, VitConfig};
use braid_llm::{LanguageModel, Llama};
use braid_nn::cross_entropy;
use braid_projectors::MlpProjector;
use braid_train::{clip_grad_norm, AdamW, AdamWConfig, CosineWithWarmup, GradAccumulator, Grads};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use common::{fixture, projector, root, tiny_llama, PROJECTOR};

const TOL: f32 = 1e-4;

/// The tower as saved by `CLIPVisionModel.save_pretrained`, read out at layer -2; every
/// tensor of the file must be used.
fn vit() -> Vit {
    let dir = root().join("fixtures/train/align_vit");
    let cfg: VitConfig =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let ckpt = Checkpoint::open(dir.join("model.safetensors")).unwrap();
    let (vb, tracker) = ckpt.var_builder(DType::F32, &Device::Cpu);
    let vit = Vit::new(&cfg, vb).unwrap().with_feature_layer(-2).unwrap();
    let report = tracker.report();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.used, ckpt.names().len());
    vit
}

/// LLaVA's "default" selection: pixels [batch, 3, 16, 16] -> [batch, 16, 16] (class token dropped)
fn features(vit: &Vit, pixels: &Tensor) -> Tensor {
    let hidden = vit.hidden_state(pixels, -2).unwrap();
    hidden.narrow(1, 1, hidden.dim(1).unwrap() - 1).unwrap()
}

struct Model {
    vit: Vit,
    proj: MlpProjector,
    llm: Llama,
}

impl Model {
    /// pixels: [batch, 3, 16, 16], ids: [batch, 6] -> caption loss []
    fn loss(&self, pixels: &Tensor, ids: &Tensor) -> Tensor {
        let img = self.proj.forward(&features(&self.vit, pixels)).unwrap();
        let n_img = img.dim(1).unwrap();
        let text = self.llm.embed_tokens(&ids.to_dtype(DType::U32).unwrap()).unwrap();
        let logits = self
            .llm
            .forward_embeds(&Tensor::cat(&[img, text], 1).unwrap(), None, None)
            .unwrap()
            .logits;
        let (batch, seq, _) = logits.dims3().unwrap();
        let masked = Tensor::full(-100i64, (batch, n_img + 1), &Device::Cpu).unwrap();
        let labels =
            Tensor::cat(&[masked, ids.narrow(1, 1, ids.dim(1).unwrap() - 1).unwrap()], 1).unwrap();
        let shifted = logits.narrow(1, 0, seq - 1).unwrap();
        cross_entropy(&shifted, &labels.narrow(1, 1, seq - 1).unwrap(), Some(-100)).unwrap()
    }

    fn accumulate(&self, vm: &VarMap, fx: &HashMap<String, Tensor>, step: usize) -> (Grads, f32) {
        let (pixels, ids) = (fx["pixels"].get(step).unwrap(), fx["ids"].get(step).unwrap());
        let micro = pixels.dim(0).unwrap();
        let mut acc = GradAccumulator::new();
        let mut total = 0f32;
        for m in 0..micro {
            let l = self.loss(&pixels.get(m).unwrap(), &ids.get(m).unwrap());
            total += l.to_scalar::<f32>().unwrap();
            acc.add(&Grads::from_store(vm, &l.backward().unwrap()).unwrap()).unwrap();
        }
        (acc.finish().unwrap(), total / micro as f32)
    }

    /// Step-1 features of every micro-batch: [micro, batch, 16, 16]
    fn step1_features(&self, fx: &HashMap<String, Tensor>) -> Tensor {
        let pixels = fx["pixels"].get(0).unwrap();
        let per: Vec<Tensor> = (0..pixels.dim(0).unwrap())
            .map(|m| features(&self.vit, &pixels.get(m).unwrap()))
            .collect();
        Tensor::stack(&per, 0).unwrap()
    }
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
fn five_align_steps_through_a_tiny_vit_match_pytorch() {
    let fx = fixture("train/align_vit.safetensors");
    let llm = tiny_llama();
    let vit = vit();
    let (proj, varmap) = projector(&fx, vit.config().hidden_size, 32);
    let model = Model { vit, proj, llm };
    let feats_before = model.step1_features(&fx);
    let worst_feat = max_abs_diff(&feats_before, &fx["feats0"]).unwrap();
    assert_close(&feats_before, &fx["feats0"], TOL, "ViT features").unwrap();

    let mut opt =
        AdamW::new(&varmap, AdamWConfig { lr: 2e-2, weight_decay: 0.05, ..Default::default() })
            .unwrap();
    let sched = CosineWithWarmup { base_lr: 2e-2, warmup_steps: 2, total_steps: 5 };
    let (lrs, losses, norms) = (vec1(&fx, "lr"), vec1(&fx, "loss"), vec1(&fx, "grad_norm"));
    let (mut worst_loss, mut worst_grad, mut worst_norm) = (0f32, 0f32, 0f32);
    for step in 0..5 {
        close(sched.lr(step), lrs[step], &format!("lr {step}"));
        opt.set_lr(sched.lr(step));
        let (mut grads, l) = model.accumulate(&varmap, &fx, step);
        worst_loss = worst_loss.max(close(l as f64, losses[step], &format!("loss {step}")));
        if step == 0 {
            for name in PROJECTOR {
                let (got, want) = (grads.get(name).unwrap(), &fx[&format!("grad1.{name}")]);
                worst_grad = worst_grad.max(max_abs_diff(got, want).unwrap());
                assert_close(got, want, TOL, name).unwrap();
            }
        }
        let norm = clip_grad_norm(&mut grads, 1.0).unwrap();
        worst_norm = worst_norm.max(close(norm, norms[step], &format!("grad norm {step}")));
        opt.step(&grads).unwrap();
    }

    let vars = varmap.data().lock().unwrap();
    let mut worst_w = 0f32;
    for name in PROJECTOR {
        let want = &fx[&format!("final.{name}")];
        worst_w = worst_w.max(max_abs_diff(vars[name].as_tensor(), want).unwrap());
        assert_close(vars[name].as_tensor(), want, TOL, name).unwrap();
    }
    // The frozen tower computes exactly what it did before training.
    assert_close(&model.step1_features(&fx), &feats_before, 0.0, "ViT features after training")
        .unwrap();
    println!(
        "max |diff|: ViT features {worst_feat:.2e}, loss {worst_loss:.2e}, grad norm {worst_norm:.2e}, \
         step-1 grads {worst_grad:.2e}, final weights {worst_w:.2e}"
    );
}
