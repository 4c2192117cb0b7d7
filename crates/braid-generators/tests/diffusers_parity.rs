//! Parity with diffusers 0.42.1 on the tiny random Stable Diffusion folder written by
//! `scripts/fixtures/diffusion.py`: one UNet call, the VAE both ways, the text encoder,
//! the tokenizer (both file forms), every scheduler plan, and whole 4-step DDIM and Euler
//! sampling with guidance 7.5, each within 1e-4 relative.
#![allow(clippy::unwrap_used)]

mod common;

use common::copy_dir;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use braid_core::checkpoint::Checkpoint;
use braid_generators::diffusion::{AutoencoderKl, Scheduler, StableDiffusion, UNet2DCondition};
use candle_core::{DType, Device, Tensor};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/diffusion")
}

fn sd_dir() -> PathBuf {
    root().join("tiny-sd")
}

fn io() -> HashMap<String, Tensor> {
    candle_core::safetensors::load(root().join("io.safetensors"), &Device::Cpu).unwrap()
}

/// max |got - want| / max |want|
fn rel(got: &Tensor, want: &Tensor) -> f32 {
    assert_eq!(got.dims(), want.dims());
    let diff = (got - want).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    let scale = want.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    diff / scale.max(1e-12)
}

fn assert_close(name: &str, got: &Tensor, want: &Tensor) {
    let r = rel(got, want);
    assert!(r < 1e-4, "{name}: relative error {r}");
}

fn tensors_in(path: &Path) -> usize {
    Checkpoint::open(path).unwrap().names().len()
}

#[test]
fn unet_step_matches_diffusers_and_uses_every_tensor() {
    let io = io();
    let dir = sd_dir().join("unet");
    let (unet, report) = UNet2DCondition::from_folder(&dir, DType::F32, &Device::Cpu).unwrap();
    assert_eq!(report.used, tensors_in(&dir.join("diffusion_pytorch_model.safetensors")));
    let context = Tensor::cat(&[&io["cond"], &io["uncond"]], 0).unwrap();
    let out = unet.forward(&io["unet_sample"], &io["unet_t"], &context).unwrap();
    assert_close("unet", &out, &io["unet_out"]);
}

#[test]
fn vae_decode_and_encode_match_diffusers() {
    let io = io();
    let dir = sd_dir().join("vae");
    let (vae, report) = AutoencoderKl::from_folder(&dir, DType::F32, &Device::Cpu).unwrap();
    assert_eq!(report.used, tensors_in(&dir.join("diffusion_pytorch_model.safetensors")));
    assert_close("decode", &vae.decode(&io["vae_latent"]).unwrap(), &io["vae_decoded"]);
    let (mean, logvar) = vae.encode(&io["vae_image"]).unwrap();
    assert_close("mean", &mean, &io["vae_mean"]);
    assert_close("logvar", &logvar, &io["vae_logvar"]);
}

#[test]
fn prompt_tokens_and_condition_match_both_tokenizer_forms() {
    let io = io();
    let sd = StableDiffusion::from_folder(&sd_dir(), &Device::Cpu).unwrap();
    let ids = sd.tokenize("a red circle").unwrap();
    let want = io["ids"].to_dtype(DType::U32).unwrap();
    assert_eq!(ids.to_vec2::<u32>().unwrap(), want.to_vec2::<u32>().unwrap());
    let empty = sd.tokenize("").unwrap();
    let want_empty = io["uncond_ids"].to_dtype(DType::U32).unwrap();
    assert_eq!(empty.to_vec2::<u32>().unwrap(), want_empty.to_vec2::<u32>().unwrap());
    assert_close("cond", &sd.encode_prompt("a red circle").unwrap(), &io["cond"]);
    assert_close("uncond", &sd.encode_prompt("").unwrap(), &io["uncond"]);

    // The same folder with only the slow tokenizer's vocab.json + merges.txt.
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&sd_dir(), tmp.path());
    std::fs::remove_file(tmp.path().join("tokenizer/tokenizer.json")).unwrap();
    let slow = StableDiffusion::from_folder(tmp.path(), &Device::Cpu).unwrap();
    for prompt in ["a red circle", "A Photo of a DOG!", "zebra 5", ""] {
        assert_eq!(
            slow.tokenize(prompt).unwrap().to_vec2::<u32>().unwrap(),
            sd.tokenize(prompt).unwrap().to_vec2::<u32>().unwrap(),
            "{prompt}"
        );
    }
}

#[test]
fn scheduler_plans_match_diffusers_for_every_spacing() {
    let text = std::fs::read_to_string(root().join("schedules.json")).unwrap();
    let cases: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    assert_eq!(cases.len(), 9);
    let floats = |v: &serde_json::Value| -> Vec<f64> {
        v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
    };
    for case in &cases {
        let spacing = case["spacing"].as_str().unwrap();
        let steps = case["steps"].as_u64().unwrap() as usize;
        let base = serde_json::json!({"num_train_timesteps": 1000, "beta_start": 0.00085,
            "beta_end": 0.012, "beta_schedule": "scaled_linear", "timestep_spacing": spacing,
            "steps_offset": if spacing == "leading" { 1 } else { 0 }});
        let with = |class: &str| {
            let mut m = base.as_object().unwrap().clone();
            m.insert("_class_name".into(), class.into());
            Scheduler::from_map(m).unwrap()
        };
        let ddim = with("DDIMScheduler");
        let mut ddim_cfg = base.as_object().unwrap().clone();
        ddim_cfg.insert("steps_offset".into(), 1.into());
        let ddim = if spacing == "leading" {
            ddim
        } else {
            let mut m = ddim_cfg;
            m.insert("_class_name".into(), "DDIMScheduler".into());
            Scheduler::from_map(m).unwrap()
        };
        let plan = ddim.plan(steps).unwrap();
        assert_eq!(plan.timesteps, floats(&case["ddim"]), "ddim {spacing} {steps}");
        let euler = with("EulerDiscreteScheduler");
        let plan = euler.plan(steps).unwrap();
        let want_t = floats(&case["euler"]);
        let want_s = floats(&case["euler_sigmas"]);
        for (a, b) in plan.timesteps.iter().zip(&want_t) {
            assert!(
                (a - b).abs() < 1e-3,
                "euler {spacing} {steps}: {:?} vs {want_t:?}",
                plan.timesteps
            );
        }
        assert_eq!(plan.sigmas.len(), want_s.len());
        for (a, b) in plan.sigmas.iter().zip(&want_s) {
            assert!(
                (a - b).abs() <= 1e-5 * (1.0 + b.abs()),
                "sigmas {spacing} {steps}: {a} vs {b}"
            );
        }
        let init = case["euler_init_noise_sigma"].as_f64().unwrap();
        assert!((euler.init_noise_sigma(&plan) - init).abs() < 1e-5 * init, "{spacing} {steps}");
    }
}

#[test]
fn four_step_ddim_and_euler_sampling_match_diffusers() {
    let io = io();
    let sd = StableDiffusion::from_folder(&sd_dir(), &Device::Cpu).unwrap();
    let euler = Scheduler::from_file(&root().join("euler/scheduler_config.json")).unwrap();
    for (name, sched) in [("ddim", None), ("euler", Some(&euler))] {
        let lat = sd.denoise(&io["latents0"], &io["cond"], &io["uncond"], 4, 7.5, sched).unwrap();
        assert_close(&format!("{name} latents"), &lat, &io[&format!("{name}_latents")]);
        assert_close(
            &format!("{name} image"),
            &sd.decode(&lat).unwrap(),
            &io[&format!("{name}_image")],
        );
    }
}
