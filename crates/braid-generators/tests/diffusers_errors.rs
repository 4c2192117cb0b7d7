//! Bad Stable Diffusion folders and requests: each an error naming the component, field
//! or value, never a panic.
#![allow(clippy::unwrap_used)]

mod common;

use common::{copy_dir, sd_dir};

use std::path::Path;

use braid_generators::diffusion::{SchedulerKind, StableDiffusion};
use braid_generators::{GenerateOptions, Generator};
use candle_core::Device;

/// A copy of the fixture folder with `edit` applied; the error opening it.
fn open_edited(edit: impl FnOnce(&Path)) -> String {
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&sd_dir(), tmp.path());
    edit(tmp.path());
    StableDiffusion::from_folder(tmp.path(), &Device::Cpu).unwrap_err().to_string()
}

fn set_json(path: &Path, key: &str, value: serde_json::Value) {
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    v[key] = value;
    std::fs::write(path, serde_json::to_string(&v).unwrap()).unwrap();
}

#[test]
fn a_missing_component_is_named() {
    let err = open_edited(|d| std::fs::remove_dir_all(d.join("vae")).unwrap());
    assert!(err.contains("`vae/`"), "{err}");
    let err = open_edited(|d| std::fs::remove_file(d.join("model_index.json")).unwrap());
    assert!(err.contains("model_index.json"), "{err}");
    let err = open_edited(|d| {
        std::fs::remove_file(d.join("unet/diffusion_pytorch_model.safetensors")).unwrap()
    });
    assert!(err.contains("diffusion_pytorch_model.safetensors"), "{err}");
}

#[test]
fn an_unknown_scheduler_or_option_is_named() {
    let err = open_edited(|d| {
        set_json(&d.join("scheduler/scheduler_config.json"), "_class_name", "PNDMScheduler".into())
    });
    assert!(err.contains("PNDMScheduler") && err.contains("--scheduler"), "{err}");
    // SD 1.x ships PNDM: its noise schedule is sampled by DDIM or Euler on request.
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&sd_dir(), tmp.path());
    let cfg = tmp.path().join("scheduler/scheduler_config.json");
    set_json(&cfg, "_class_name", "PNDMScheduler".into());
    set_json(&cfg, "skip_prk_steps", true.into());
    let sd = StableDiffusion::from_folder_as(tmp.path(), &Device::Cpu, Some(SchedulerKind::Euler))
        .unwrap();
    assert_eq!(sd.scheduler.kind(), SchedulerKind::Euler);
    let err = open_edited(|d| {
        set_json(&d.join("scheduler/scheduler_config.json"), "thresholding", true.into())
    });
    assert!(err.contains("thresholding"), "{err}");
    let err = open_edited(|d| {
        set_json(&d.join("unet/config.json"), "class_embed_type", "timestep".into())
    });
    assert!(err.contains("class_embed_type"), "{err}");
    let err = open_edited(|d| set_json(&d.join("unet/config.json"), "hyper_wings", 3.into()));
    assert!(err.contains("hyper_wings"), "{err}");
    let err = open_edited(|d| set_json(&d.join("vae/config.json"), "shift_factor", 0.1.into()));
    assert!(err.contains("shift_factor"), "{err}");
}

#[test]
fn a_truncated_checkpoint_names_the_missing_tensors() {
    let err = open_edited(|d| {
        let p = d.join("vae/diffusion_pytorch_model.safetensors");
        let mut ts = candle_core::safetensors::load(&p, &Device::Cpu).unwrap();
        ts.remove("decoder.conv_out.weight");
        candle_core::safetensors::save(&ts, &p).unwrap();
    });
    assert!(err.contains("decoder.conv_out.weight"), "{err}");
}

#[test]
fn bad_requests_are_errors_naming_the_value() {
    let sd = StableDiffusion::from_folder(&sd_dir(), &Device::Cpu).unwrap();
    let long = "a red circle and a blue square beside a green triangle";
    let err = sd.tokenize(long).unwrap_err().to_string();
    assert!(err.contains("16 tokens"), "{err}");
    let cond = sd.encode_prompt("a red circle").unwrap();
    let run = |steps: usize, guidance: f64| {
        sd.generate(&cond, &GenerateOptions { seed: 0, steps, guidance }).map(|_| ())
    };
    let err = run(0, 7.5).unwrap_err().to_string();
    assert!(err.contains("steps"), "{err}");
    let err = run(2, f64::NAN).unwrap_err().to_string();
    assert!(err.contains("guidance"), "{err}");
    let err = run(1001, 7.5).unwrap_err().to_string();
    assert!(err.contains("steps"), "{err}");
    let img = sd.generate(&cond, &GenerateOptions { seed: 3, steps: 2, guidance: 3.0 }).unwrap();
    assert_eq!(img.dims(), [1, 3, 16, 16]);
    let again = sd.generate(&cond, &GenerateOptions { seed: 3, steps: 2, guidance: 3.0 }).unwrap();
    let diff = (img - again).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    assert_eq!(diff, 0.0, "the same seed gives the same image");
}
