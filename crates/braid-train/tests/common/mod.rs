//! What the step-parity tests share: the repository root, a fixture file, the tiny Llama
//! of `fixtures/llm/llama_tiny` with trainable-path weights, and the MLP projector the
//! PyTorch scripts start from (`init.<name>` of the fixture).
#![allow(clippy::unwrap_used, dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;

use braid_llm::{Llama, Weights};
use braid_projectors::{MlpProjector, MlpProjectorConfig};
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};

/// The projector's variables, as PyTorch names them.
pub const PROJECTOR: [&str; 4] =
    ["linear_1.weight", "linear_1.bias", "linear_2.weight", "linear_2.bias"];

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `fixtures/<name>`'s tensors.
pub fn fixture(name: &str) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(root().join("fixtures").join(name), &Device::Cpu).unwrap()
}

/// The tiny Llama, its weights constants of the differentiable path.
pub fn tiny_llama() -> Llama {
    let dir = root().join("fixtures/llm/llama_tiny");
    Llama::load(&dir, Weights::Trainable(DType::F32), &Device::Cpu).unwrap().0
}

/// An MLP projector `d_in -> d_out` set to the fixture's `init.<name>` weights.
pub fn projector(
    fx: &HashMap<String, Tensor>,
    d_in: usize,
    d_out: usize,
) -> (MlpProjector, VarMap) {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let proj = MlpProjector::new(MlpProjectorConfig::default(), d_in, d_out, vb).unwrap();
    let vars = varmap.data().lock().unwrap();
    assert_eq!(vars.len(), PROJECTOR.len());
    for name in PROJECTOR {
        vars[name].set(&fx[&format!("init.{name}")]).unwrap();
    }
    drop(vars);
    (proj, varmap)
}
