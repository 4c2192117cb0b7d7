use std::collections::HashMap;
use std::path::PathBuf;

use braid_core::testing::{assert_close, max_abs_diff};
use braid_nn::gradcheck::check_all_vars_get_grad;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;

use super::*;

fn dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/clip").join(name)
}

/// The fixture's pixels: `(u8 / 255 - 0.5) / 0.25` in f32, as the script computed them.
fn pixels(u8s: &Tensor) -> Tensor {
    ((u8s.to_dtype(DType::F32).unwrap() / 255.0).unwrap() - 0.5).unwrap().affine(4.0, 0.0).unwrap()
}

fn load(name: &str) -> (Clip, HashMap<String, Tensor>) {
    let (clip, report) = Clip::load(&dir(name), &Device::Cpu).unwrap();
    assert!(report.is_clean() && report.unexpected.is_empty(), "{report}");
    let io =
        candle_core::safetensors::load(dir(name).join("io.safetensors"), &Device::Cpu).unwrap();
    (clip, io)
}

fn check(name: &str) -> f32 {
    let (clip, io) = load(name);
    let px = pixels(&io["pixel_u8"]);
    let ids = io["input_ids"].to_dtype(DType::U32).unwrap();
    let mask = io["attention_mask"].to_dtype(DType::F32).unwrap();
    let img = clip.image_features(&px).unwrap();
    let txt = clip.text_features(&ids, Some(&mask)).unwrap();
    let out = clip.vision().forward(&px).unwrap();
    let mut worst = 0f32;
    for (ours, key) in [
        (img.clone(), "image_embeds"),
        (txt.clone(), "text_embeds"),
        (out.last_hidden_state, "vision_last_hidden_state"),
        (clip.vision().hidden_state(&px, -2).unwrap(), "vision_hidden_m2"),
        (clip.text().forward(&ids, Some(&mask)).unwrap(), "text_last_hidden_state"),
        (clip.logits_per_image(&img, &txt).unwrap(), "logits_per_image"),
    ] {
        let tol = if key == "logits_per_image" { 1e-3 } else { 1e-4 };
        assert_close(&ours, &io[key], tol, &format!("{name} {key}")).unwrap();
        worst = worst.max(max_abs_diff(&ours, &io[key]).unwrap());
    }
    eprintln!("{name}: max abs diff {worst:e}");
    worst
}

#[test]
fn p14_at_224_matches_transformers() {
    check("p14_224");
}

#[test]
fn p4_at_32_with_legacy_eos_matches_transformers() {
    check("p4_32");
}

#[test]
fn p8_at_40_and_interpolated_56x48_match_transformers() {
    check("p8_40");
    let (clip, io) = load("p8_40");
    let img = clip.image_features(&pixels(&io["pixel_u8_interp"])).unwrap();
    assert_close(&img, &io["image_embeds_interp"], 1e-4, "interpolated").unwrap();
}

#[test]
fn indivisible_image_is_a_clear_error() {
    let (clip, _) = load("p8_40");
    let px = Tensor::zeros((1, 3, 40, 42), DType::F32, &Device::Cpu).unwrap();
    let err = clip.image_features(&px).unwrap_err().to_string();
    assert!(err.contains("40x42") && err.contains("patch size 8x8"), "{err}");
}

#[test]
fn both_towers_and_projections_get_gradient() {
    let cfg = ClipConfig::from_json_file(&dir("p8_40").join("config.json")).unwrap();
    let vm = VarMap::new();
    let clip = Clip::new(&cfg, VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu)).unwrap();
    let px = Tensor::randn(0f32, 1., (2, 3, 40, 40), &Device::Cpu).unwrap();
    let eos = cfg.text_config.eos_token_id;
    let ids = Tensor::new(&[[0u32, 5, 7, eos], [0, 9, eos, 0]], &Device::Cpu).unwrap();
    let mask = Tensor::new(&[[1f32, 1., 1., 1.], [1., 1., 1., 0.]], &Device::Cpu).unwrap();
    let logits = clip
        .logits_per_image(
            &clip.image_features(&px).unwrap(),
            &clip.text_features(&ids, Some(&mask)).unwrap(),
        )
        .unwrap();
    // A contrastive-style loss: log-softmax over texts, on the matching pairs.
    let loss = braid_nn::log_softmax(&logits, 1).unwrap().sum_all().unwrap().neg().unwrap();
    let loss = (loss
        + clip.vision().forward(&px).unwrap().last_hidden_state.sqr().unwrap().mean_all().unwrap())
    .unwrap();
    check_all_vars_get_grad(&vm, &loss).unwrap();
}
