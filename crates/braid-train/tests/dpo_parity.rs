//! Step parity of the DPO loss against PyTorch (`scripts/fixtures/train_dpo.py`): an MLP
//! projector feeding 4 image tokens before a prompt and an answer into the frozen tiny
//! Llama, sequence log-probabilities summed over the answer, reference log-probabilities
//! from the initial projector, 5 AdamW steps on the DPO loss. The reference's
//! log-probabilities, every step's loss, the step-1 gradients and the final weights must
//! match within 1e-4 (the bound; they agree to ~1e-6).
#![allow(clippy::unwrap_used)]

mod common;

use braid_core::testing::{assert_close, max_abs_diff};
use braid_llm::{LanguageModel, Llama};
use braid_projectors::MlpProjector;
use braid_train::stages::preference::{dpo_loss, sequence_logps};
use braid_train::{AdamW, AdamWConfig, Grads};
use candle_core::{DType, Device, Tensor};
use common::{fixture, projector, tiny_llama, PROJECTOR};

const TOL: f32 = 1e-4;
const BETA: f64 = 0.1;

/// Log-probabilities of `answer` [batch, 3] after image `feats` [batch, 4, 12] and
/// `prompt` [batch, 3], one sequence per row. -> [batch]
fn logps(
    proj: &MlpProjector,
    llm: &Llama,
    feats: &Tensor,
    prompt: &Tensor,
    answer: &Tensor,
) -> Tensor {
    let img = proj.forward(feats).unwrap();
    let ids = Tensor::cat(&[prompt, answer], 1).unwrap().to_dtype(DType::U32).unwrap();
    let embeds = Tensor::cat(&[img, llm.embed_tokens(&ids).unwrap()], 1).unwrap();
    let (batch, t, _) = embeds.dims3().unwrap();
    let sequences = (0..batch)
        .map(|b| {
            let ans: Vec<i64> = answer.get(b).unwrap().to_vec1().unwrap();
            let mut labels = vec![-100i64; t - ans.len()];
            labels.extend(ans);
            (embeds.narrow(0, b, 1).unwrap(), labels)
        })
        .collect();
    sequence_logps(llm, sequences).unwrap()
}

#[test]
fn five_dpo_steps_match_pytorch() {
    let fx = fixture("train/dpo.safetensors");
    let llm = tiny_llama();
    let (proj, varmap) = projector(&fx, 12, 32);
    let step_of = |name: &str, s: usize| fx[name].get(s).unwrap();
    // The reference: the initial projector, before any step.
    let (mut ref_c, mut ref_r) = (Vec::new(), Vec::new());
    for s in 0..5 {
        let (f, p) = (step_of("feats", s), step_of("prompt", s));
        ref_c.push(logps(&proj, &llm, &f, &p, &step_of("chosen", s)).detach());
        ref_r.push(logps(&proj, &llm, &f, &p, &step_of("rejected", s)).detach());
    }
    assert_close(&Tensor::stack(&ref_c, 0).unwrap(), &fx["ref_chosen"], TOL, "reference chosen")
        .unwrap();
    assert_close(
        &Tensor::stack(&ref_r, 0).unwrap(),
        &fx["ref_rejected"],
        TOL,
        "reference rejected",
    )
    .unwrap();
    let mut opt =
        AdamW::new(&varmap, AdamWConfig { lr: 5e-2, weight_decay: 0.05, ..Default::default() })
            .unwrap();
    let losses: Vec<f32> = fx["loss"].to_vec1().unwrap();
    let mut worst = 0f32;
    for s in 0..5 {
        let (f, p) = (step_of("feats", s), step_of("prompt", s));
        let pc = logps(&proj, &llm, &f, &p, &step_of("chosen", s));
        let pr = logps(&proj, &llm, &f, &p, &step_of("rejected", s));
        let (loss, _) = dpo_loss(&pc, &pr, &ref_c[s], &ref_r[s], BETA).unwrap();
        let l = loss.to_scalar::<f32>().unwrap();
        assert!((l - losses[s]).abs() <= TOL, "loss {s}: {l} vs {}", losses[s]);
        worst = worst.max((l - losses[s]).abs());
        let grads = Grads::from_store(&varmap, &loss.backward().unwrap()).unwrap();
        if s == 0 {
            for name in PROJECTOR {
                let got = grads.get(name).expect("every projector variable gets a gradient");
                worst = worst.max(max_abs_diff(got, &fx[&format!("grad1.{name}")]).unwrap());
                assert_close(got, &fx[&format!("grad1.{name}")], TOL, name).unwrap();
            }
        }
        opt.step(&grads).unwrap();
    }
    let vars = varmap.data().lock().unwrap();
    for name in PROJECTOR {
        let want = &fx[&format!("final.{name}")];
        worst = worst.max(max_abs_diff(vars[name].as_tensor(), want).unwrap());
        assert_close(vars[name].as_tensor(), want, TOL, name).unwrap();
    }
    println!(
        "max |diff| over reference log-probs, losses, step-1 grads, final weights: {worst:.2e}"
    );
}

#[test]
fn the_dpo_loss_is_log_two_at_the_reference_and_falls_as_the_margin_grows() {
    let dev = Device::Cpu;
    let z = Tensor::new(&[-3.0f32, -1.0], &dev).unwrap();
    let (at_ref, _) = dpo_loss(&z, &z, &z, &z, 0.1).unwrap();
    assert!((at_ref.to_scalar::<f32>().unwrap() - std::f32::consts::LN_2).abs() < 1e-6);
    let better = Tensor::new(&[-2.0f32, 0.0], &dev).unwrap();
    let (l, m) = dpo_loss(&better, &z, &z, &z, 0.5).unwrap();
    assert!(l.to_scalar::<f32>().unwrap() < std::f32::consts::LN_2);
    assert_eq!(m.to_vec1::<f32>().unwrap(), vec![0.5, 0.5]);
    // Very large margins stay finite.
    let (l, _) = dpo_loss(&Tensor::new(&[1e4f32, -1e4], &dev).unwrap(), &z, &z, &z, 1.0).unwrap();
    assert!(l.to_scalar::<f32>().unwrap().is_finite());
}
