//! Test helper: PyTorch parity fixtures under `fixtures/`, loaded through
//! [`Checkpoint::var_builder`] so a test can assert that every weight of a module was used.

use braid_core::checkpoint::{Checkpoint, LoadTracker};
use braid_core::{Error, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

/// One fixture file (`fixtures/<rel>`).
pub(crate) struct Fixture(Checkpoint);

/// Opens `fixtures/<rel>` from the workspace root.
pub(crate) fn load(rel: &str) -> Result<Fixture> {
    let path = format!("{}/../../fixtures/{rel}", env!("CARGO_MANIFEST_DIR"));
    Ok(Fixture(Checkpoint::open(path)?))
}

impl Fixture {
    /// The tensor `name` as f32.
    pub(crate) fn get(&self, name: &str) -> Result<Tensor> {
        self.0.tensor(name, DType::F32, &Device::Cpu)
    }

    /// A tracking var builder over the whole file (f32, CPU).
    pub(crate) fn vb(&self) -> (VarBuilder<'static>, LoadTracker) {
        self.0.var_builder(DType::F32, &Device::Cpu)
    }

    /// Fails unless nothing was missing or mismatched and every tensor under `prefix` was used.
    pub(crate) fn assert_used(&self, tracker: &LoadTracker, prefix: &str) -> Result<()> {
        let mut report = tracker.report();
        report.unexpected.retain(|n| n.starts_with(prefix));
        if report.is_clean() && report.used > 0 {
            return Ok(());
        }
        Err(Error::Invalid(format!("{prefix}: {report:?}")))
    }
}

/// Fails when `got` and `want` differ by more than `tol` (max abs).
pub(crate) fn check(got: &Tensor, want: &Tensor, tol: f32, what: &str) -> Result<()> {
    let d = braid_core::testing::max_abs_diff(got, want)?;
    eprintln!("{what}: max abs diff {d:.3e} (tolerance {tol:.0e})");
    braid_core::testing::assert_close(got, want, tol, what)
}
