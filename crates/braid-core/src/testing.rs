//! Helpers for tests in every crate.

use candle_core::Tensor;

use crate::{Error, Result};

/// Largest absolute elementwise difference between two tensors of the same shape.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> Result<f32> {
    if a.dims() != b.dims() {
        return Err(Error::shape("compared tensor", a.dims(), b.dims()));
    }
    let d = (a.to_dtype(candle_core::DType::F32)? - b.to_dtype(candle_core::DType::F32)?)?;
    Ok(d.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?)
}

/// Fails with the largest difference when `a` and `b` differ by more than `tol` anywhere.
pub fn assert_close(a: &Tensor, b: &Tensor, tol: f32, what: &str) -> Result<()> {
    let d = max_abs_diff(a, b)?;
    if d.is_nan() || d > tol {
        return Err(Error::Invalid(format!("{what}: max abs diff {d} exceeds {tol}")));
    }
    Ok(())
}
