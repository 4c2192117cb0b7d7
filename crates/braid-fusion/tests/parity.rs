//! Parity with PyTorch re-implementations of MultiBench's `TensorFusion` and
//! `LowRankTensorFusion` and MulT's cross-modal block (`scripts/fixtures/fusion.py`,
//! `fixtures/nn/fusion.safetensors`), within 1e-5.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;

use braid_fusion::methods::{sinusoidal_positions, tensor_fusion, CrossModalBlock, LowRankFusion};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

const TOL: f32 = 1e-5;

fn fixture() -> HashMap<String, Tensor> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/nn/fusion.safetensors");
    candle_core::safetensors::load(path, &Device::Cpu).unwrap()
}

fn close(got: &Tensor, want: &Tensor, what: &str) {
    braid_core::testing::assert_close(got, want, TOL, what).unwrap();
}

#[test]
fn tensor_fusion_matches_multibench() {
    let f = fixture();
    let z: Vec<Tensor> = (0..3).map(|i| f[&format!("tfn.z{i}")].clone()).collect();
    close(&tensor_fusion(&z).unwrap(), &f["tfn.out"], "tfn");
}

#[test]
fn low_rank_fusion_matches_multibench() {
    let f = fixture();
    let vb = VarBuilder::from_tensors(f.clone(), DType::F32, &Device::Cpu);
    let lmf = LowRankFusion::new(&[5, 6], 7, 4, vb.pp("lmf")).unwrap();
    let out = lmf.forward(&[f["lmf.z0"].clone(), f["lmf.z1"].clone()]).unwrap();
    close(&out, &f["lmf.out"], "lmf");
}

#[test]
fn cross_modal_block_matches_mult() {
    let f = fixture();
    let vb = VarBuilder::from_tensors(f.clone(), DType::F32, &Device::Cpu);
    let block = CrossModalBlock::new(8, 2, vb.pp("mult.block")).unwrap();
    let out = block.forward(&f["mult.x"], Some(&f["mult.ctx"])).unwrap();
    close(&out, &f["mult.out"], "mult block");
    close(&sinusoidal_positions(5, 8, &Device::Cpu).unwrap(), &f["mult.positions"], "positions");
}
