//! A `candle_nn` var builder backend over a [`Checkpoint`] that records every tensor a
//! module asks for, so a [`LoadReport`] can name all missing, unexpected and wrongly
//! shaped tensors at once.
//!
//! What stands in for a missing or mismatched tensor costs no memory in proportion to the
//! shape the module asked for (that shape comes from a config, which may be absurd), and
//! after [`MAX_PROBLEMS`] of them construction stops: a config claiming a million layers
//! fails at once instead of building a million placeholders.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;

use super::{Checkpoint, LoadReport};

/// Missing plus mismatched tensors after which building the module stops with the
/// report so far.
pub const MAX_PROBLEMS: usize = 1000;

/// Placeholders up to this many elements are real zeros; larger ones are one zero
/// broadcast to the shape, so nothing is allocated for them.
const DENSE_PLACEHOLDER: usize = 1 << 16;

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
            r.used.contains_key(n)
                || r.missing.contains(n)
                || r.mismatched.iter().any(|(m, _, _)| m == n)
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

/// Zeros of shape `s`: dense when small, a broadcast scalar (no allocation) otherwise.
fn placeholder(s: Shape, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
    let Some(n) = s.dims().iter().try_fold(1usize, |a, &d| a.checked_mul(d)) else {
        return Err(candle_core::Error::Msg(format!(
            "the module asks for a tensor of shape {:?}, whose size overflows",
            s.dims()
        )));
    };
    if n <= DENSE_PLACEHOLDER {
        return Tensor::zeros(s, dtype, dev);
    }
    Tensor::zeros((), dtype, dev)?.broadcast_as(s)
}

impl Tracking {
    fn note_missing(&self, name: &str) {
        let mut r = self.0.lock();
        if !r.missing.iter().any(|n| n == name) {
            r.missing.push(name.to_string());
        }
    }

    /// An error carrying the report so far once there are too many problems to go on.
    fn give_up_if_hopeless(&self) -> candle_core::Result<()> {
        let problems = {
            let r = self.0.lock();
            r.missing.len() + r.mismatched.len()
        };
        if problems < MAX_PROBLEMS {
            return Ok(());
        }
        let summary = match self.0.report().into_result(self.0.ckpt.path()) {
            Err(e) => e.to_string(),
            Ok(_) => self.0.ckpt.path().display().to_string(),
        };
        Err(candle_core::Error::Msg(format!(
            "{summary}; stopped after {MAX_PROBLEMS} missing or mismatched tensors: the checkpoint does not fit this config"
        )))
    }

    fn load(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        let t = self
            .0
            .ckpt
            .tensor(name, dtype, dev)
            .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        self.0.lock().used.insert(name.to_string(), t.elem_count());
        Ok(t)
    }
}

impl SimpleBackend for Tracking {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let Some(found) = self.0.ckpt.shape(name) else {
            self.note_missing(name);
            self.give_up_if_hopeless()?;
            return placeholder(s, dtype, dev);
        };
        if found != s.dims() {
            {
                let mut r = self.0.lock();
                if !r.mismatched.iter().any(|(n, _, _)| n == name) {
                    r.mismatched.push((name.to_string(), s.dims().to_vec(), found));
                }
            }
            self.give_up_if_hopeless()?;
            return placeholder(s, dtype, dev);
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
pub(super) fn var_builder(
    ckpt: Checkpoint,
    dtype: DType,
    device: &Device,
) -> (candle_nn::VarBuilder<'static>, LoadTracker) {
    let tracker = LoadTracker { ckpt, record: Arc::new(Mutex::new(Record::default())) };
    let vb = candle_nn::VarBuilder::from_backend(
        Box::new(Tracking(tracker.clone())),
        dtype,
        device.clone(),
    );
    (vb, tracker)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Error, Result};

    fn one_tensor_checkpoint(dir: &std::path::Path) -> Result<Checkpoint> {
        let p = dir.join("m.safetensors");
        let t = Tensor::zeros((2, 3), DType::F32, &Device::Cpu)?;
        candle_core::safetensors::save(
            &std::collections::HashMap::from([("w".to_string(), t)]),
            &p,
        )?;
        Checkpoint::open(&p)
    }

    #[test]
    fn alloc_tracker_placeholder_of_a_claimed_shape() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let (vb, tracker) =
            one_tensor_checkpoint(dir.path())?.var_builder(DType::F32, &Device::Cpu);
        // 2^40 elements each: allocating them would take 4 TiB.
        let huge = (1usize << 20, 1usize << 20);
        let w = vb.get(huge, "w")?;
        let m = vb.get(huge, "missing")?;
        assert_eq!((w.dims(), m.dims()), (&[1 << 20, 1 << 20][..], &[1 << 20, 1 << 20][..]));
        let msg = tracker
            .report()
            .into_result("m.safetensors")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            msg.contains("1 missing (missing)")
                && msg.contains("w: expected [1048576, 1048576], file has [2, 3]"),
            "{msg}"
        );
        let e = vb
            .get((1usize << 40, 1usize << 40), "overflowing")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("whose size overflows"), "{e}");
        // Small placeholders stay ordinary zeros.
        assert_eq!(vb.get(4, "small")?.to_vec1::<f32>()?, vec![0.0; 4]);
        Ok(())
    }

    #[test]
    fn hang_tracker_placeholders_for_a_million_layers() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let (vb, _) = one_tensor_checkpoint(dir.path())?.var_builder(DType::F32, &Device::Cpu);
        let start = std::time::Instant::now();
        let err =
            (0..1_000_000).try_for_each(|i| vb.get(8, &format!("layers.{i}.weight")).map(|_| ()));
        let msg = err.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            msg.contains("m.safetensors")
                && msg.contains("stopped after 1000 missing or mismatched"),
            "{msg}"
        );
        assert!(!msg.contains('\n') && msg.contains("layers.0.weight"), "{msg}");
        assert!(start.elapsed().as_secs() < 5, "took {:?}", start.elapsed());
        Ok(())
    }
}
