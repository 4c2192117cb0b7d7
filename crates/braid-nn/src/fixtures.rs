//! Loads the PyTorch parity fixtures written by `scripts/fixtures/nn_layers.py` and checks
//! that every tensor in a fixture was read.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use braid_core::{Error, Result};
use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::VarBuilder;

/// f32 parity tolerance (max abs diff) against the PyTorch references.
pub const TOL: f32 = 1e-5;

/// One fixture file: its tensors and the names read so far.
pub struct Fixture {
    name: String,
    tensors: HashMap<String, Tensor>,
    used: Arc<Mutex<HashSet<String>>>,
}

/// Reads `fixtures/nn/<name>.safetensors`.
pub fn load(name: &str) -> Result<Fixture> {
    let path = format!("{}/../../fixtures/nn/{name}.safetensors", env!("CARGO_MANIFEST_DIR"));
    let tensors = candle_core::safetensors::load(&path, &Device::Cpu)?;
    Ok(Fixture { name: name.to_string(), tensors, used: Arc::default() })
}

/// Fails when `got` differs from `want` by more than [`TOL`].
pub fn check(got: &Tensor, want: &Tensor, what: &str) -> Result<()> {
    braid_core::testing::assert_close(got, want, TOL, what)
}

impl Fixture {
    /// The tensor `name`, marked used.
    pub fn get(&self, name: &str) -> Result<Tensor> {
        mark(&self.used, name);
        self.tensors
            .get(name)
            .cloned()
            .ok_or_else(|| Error::Invalid(format!("fixture {}: no tensor `{name}`", self.name)))
    }

    /// A VarBuilder over the fixture's tensors (f32, CPU) that records what it reads.
    pub fn vb(&self) -> VarBuilder<'static> {
        let backend = Tracking { tensors: self.tensors.clone(), used: self.used.clone() };
        VarBuilder::from_backend(Box::new(backend), DType::F32, Device::Cpu)
    }

    /// Fails naming every tensor nobody read.
    pub fn assert_all_used(&self) -> Result<()> {
        let used = self.used.lock().map_err(|e| Error::Invalid(e.to_string()))?;
        let mut unused: Vec<_> = self.tensors.keys().filter(|k| !used.contains(*k)).collect();
        unused.sort();
        if unused.is_empty() {
            Ok(())
        } else {
            Err(Error::Invalid(format!("fixture {}: unused tensors {unused:?}", self.name)))
        }
    }
}

fn mark(used: &Mutex<HashSet<String>>, name: &str) {
    if let Ok(mut u) = used.lock() {
        u.insert(name.to_string());
    }
}

struct Tracking {
    tensors: HashMap<String, Tensor>,
    used: Arc<Mutex<HashSet<String>>>,
}

impl SimpleBackend for Tracking {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _h: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let t = self.get_unchecked(name, dtype, dev)?;
        if t.shape() != &s {
            candle_core::bail!("fixture tensor {name}: expected {s:?}, got {:?}", t.shape());
        }
        Ok(t)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        mark(&self.used, name);
        match self.tensors.get(name) {
            Some(t) => t.to_dtype(dtype)?.to_device(dev),
            None => candle_core::bail!("fixture has no tensor `{name}`"),
        }
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }
}
