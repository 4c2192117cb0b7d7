//! Parity of the UPM with the PyTorch re-implementation of OneLLM's `encode_image`
//! (`scripts/fixtures/upm.py`): two modalities (image, imu) through one set of shared
//! experts, soft routing and top-1 routing.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::sync::Arc;

use braid_core::checkpoint::Checkpoint;
use braid_core::Features;
use braid_projectors::{UpmConfig, UpmExperts, UpmProjector};
use candle_core::{DType, Device, Tensor};

/// f32 tolerance, max abs diff (outputs are layer-normed, of scale ~1-3).
const TOL: f32 = 1e-5;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/projectors/upm")
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    let d = (a - b).unwrap().abs().unwrap().flatten_all().unwrap();
    d.max(0).unwrap().to_scalar::<f32>().unwrap()
}

fn config(top_k: Option<usize>) -> UpmConfig {
    UpmConfig {
        experts: 3,
        layers: 2,
        width: 32,
        heads: 4,
        ffn_multiple_of: 16,
        norm_eps: 1e-5,
        queries: 5,
        router_ratio: 4,
        top_k,
        layer_norm_eps: 1e-5,
    }
}

#[test]
fn upm_matches_the_onellm_reimplementation() {
    let path = dir().join("model.safetensors");
    let ckpt = Checkpoint::open(&path).unwrap();
    let (vb, tracker) = ckpt.var_builder(DType::F32, &Device::Cpu);
    let experts = Arc::new(UpmExperts::new(&config(None), vb.clone()).unwrap());
    let io = candle_core::safetensors::load(dir().join("io.safetensors"), &Device::Cpu).unwrap();
    // OneLLM keys a modality's tensors after the first name part (`clip_proj1.imu.0`).
    let route = |m: &'static str, top_k| {
        let vb = vb.clone().rename_f(move |name: &str| match name.split_once('.') {
            Some((head, rest)) => format!("{head}.{m}.{rest}"),
            None => format!("{name}.{m}"),
        });
        let in_dim = io[&format!("features.{m}")].dim(2).unwrap();
        UpmProjector::with_experts(experts.clone(), &config(top_k), in_dim, 40, vb).unwrap()
    };
    for (m, top_k, suffix) in [("image", None, ""), ("imu", None, ""), ("imu", Some(1), "_top1")] {
        let upm = route(m, top_k);
        let features = Features::new(io[&format!("features.{m}")].clone(), None).unwrap();
        let (out, weights) = upm.forward(&features).unwrap();
        let d_out = max_diff(&out, &io[&format!("out{suffix}.{m}")]);
        let d_w = max_diff(&weights, &io[&format!("weights{suffix}.{m}")]);
        eprintln!("upm parity {m}{suffix}: out max abs diff {d_out:.2e}, weights {d_w:.2e}");
        assert!(d_out <= TOL && d_w <= TOL, "{m}{suffix}: {d_out} {d_w}");
    }
    let report = tracker.report().into_result(&path).unwrap();
    assert_eq!(report.used, ckpt.names().len(), "every tensor of the checkpoint is used");
}
