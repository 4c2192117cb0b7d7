//! A `candle_nn` var builder backend over a [`Checkpoint`] that records every tensor a
//! module asks for, so a [`LoadReport`] can name all missing, unexpected and wrongly
//! shaped tensors at once.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;

use super::{Checkpoint, LoadReport};

#[derive(Debug, Default)]
struct Record {
    /// Name -> elements, for tensors loaded.
    used: BTreeMap<String, usize>,
    missing: Vec<String>,
    mismatched: Vec<(String, Vec<usize>, Vec<usize>)>,
}

/// Collects what a module asked of a checkpoint; cheap to clone.
#[derive(Debug, Clone)]
pub struct LoadTracker {
    ckpt: Checkpoint,
    record: Arc<Mutex<Record>>,
}

impl LoadTracker {
    fn lock(&self) -> MutexGuard<'_, Record> {
        // A poisoned lock only means a panic elsewhere; the record itself stays valid.
        self.record.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What was requested so far against what the checkpoint holds.
    pub fn report(&self) -> LoadReport {
        let r = self.lock();
        let asked = |n: &String| {
            r.used.contains_key(n) || r.missing.contains(n) || r.mismatched.iter().any(|(m, _, _)| m == n)
        };
        LoadReport {
            missing: r.missing.clone(),
            unexpected: self.ckpt.names().into_iter().filter(|n| !asked(n)).collect(),
            mismatched: r.mismatched.clone(),
            used: r.used.len(),
            total_params: r.used.values().sum(),
        }
    }
}

struct Tracking(LoadTracker);

impl Tracking {
    fn note_missing(&self, name: &str) {
        let mut r = self.0.lock();
        if !r.missing.iter().any(|n| n == name) {
            r.missing.push(name.to_string());
        }
    }

    fn load(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        let t = self.0.ckpt.tensor(name, dtype, dev).map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        self.0.lock().used.insert(name.to_string(), t.elem_count());
        Ok(t)
    }
}

impl SimpleBackend for Tracking {
    fn get(&self, s: Shape, name: &str, _: candle_nn::Init, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        let Some(found) = self.0.ckpt.shape(name) else {
            self.note_missing(name);
            return Tensor::zeros(s, dtype, dev);
        };
        if found != s.dims() {
            let mut r = self.0.lock();
            if !r.mismatched.iter().any(|(n, _, _)| n == name) {
                r.mismatched.push((name.to_string(), s.dims().to_vec(), found));
            }
            return Tensor::zeros(s, dtype, dev);
        }
        self.load(name, dtype, dev)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        if !self.0.ckpt.contains(name) {
            self.note_missing(name);
            return Err(candle_core::Error::CannotFindTensor { path: name.to_string() });
        }
        self.load(name, dtype, dev)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.0.ckpt.contains(name)
    }
}

/// See [`Checkpoint::var_builder`].
pub(super) fn var_builder(ckpt: Checkpoint, dtype: DType, device: &Device) -> (candle_nn::VarBuilder<'static>, LoadTracker) {
    let tracker = LoadTracker { ckpt, record: Arc::new(Mutex::new(Record::default())) };
    let vb = candle_nn::VarBuilder::from_backend(Box::new(Tracking(tracker.clone())), dtype, device.clone());
    (vb, tracker)
}
