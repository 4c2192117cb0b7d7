//! Gradient checks used by every crate's tests: autograd against central finite differences
//! in f64, and "every trainable variable receives a gradient", which catches candle's fused
//! kernels (`softmax_last_dim`, `rms_norm`, ...) that silently have no backward pass.

use std::collections::HashMap;

use braid_core::{Error, Result};
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};

/// At most this many input elements are perturbed; larger inputs are checked on an evenly
/// strided subset so the check stays fast.
const MAX_PROBES: usize = 256;

/// Compares the autograd gradient of `L(x) = sum(f(x) * R)` (R a fixed pseudo-random
/// projection, so that outputs whose plain sum is constant, like softmax, still test
/// something) with central differences `(L(x + eps) - L(x - eps)) / 2 eps`, in f64.
///
/// Fails when no gradient reaches `x`, or when any probed element differs by more than
/// `tol * (1 + |numeric|)`.
pub fn finite_difference_check(
    f: impl Fn(&Tensor) -> Result<Tensor>,
    x: &Tensor,
    eps: f64,
    tol: f64,
) -> Result<()> {
    let x = x.to_dtype(DType::F64)?.detach();
    let var = Var::from_tensor(&x)?;
    let y = f(var.as_tensor())?;
    let proj = projection(&y)?;
    let loss = (y.to_dtype(DType::F64)? * &proj)?.sum_all()?;
    let grads = loss.backward()?;
    let analytic = grads
        .get(var.as_tensor())
        .ok_or_else(|| Error::Invalid("gradcheck: no gradient reaches the input".into()))?;
    let analytic = analytic.flatten_all()?.to_vec1::<f64>()?;
    let base = x.flatten_all()?.to_vec1::<f64>()?;
    let eval = |values: Vec<f64>| -> Result<f64> {
        let xp = Tensor::from_vec(values, x.shape(), x.device())?;
        Ok((f(&xp)?.to_dtype(DType::F64)? * &proj)?.sum_all()?.to_scalar::<f64>()?)
    };
    let stride = base.len().div_ceil(MAX_PROBES).max(1);
    for i in (0..base.len()).step_by(stride) {
        let mut plus = base.clone();
        plus[i] += eps;
        let mut minus = base.clone();
        minus[i] -= eps;
        let numeric = (eval(plus)? - eval(minus)?) / (2.0 * eps);
        let a = analytic[i];
        // Written so that NaN fails.
        let close = (a - numeric).abs() <= tol * (1.0 + numeric.abs());
        if !close {
            return Err(Error::Invalid(format!(
                "gradcheck: element {i} of {:?}: autograd {a}, finite difference {numeric}",
                x.dims()
            )));
        }
    }
    Ok(())
}

/// A deterministic projection in [-1, 1] with the shape of `y` (a small LCG, so the check
/// needs no RNG state and gives the same numbers on every call).
fn projection(y: &Tensor) -> Result<Tensor> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let values: Vec<f64> = (0..y.elem_count())
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((state >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
        })
        .collect();
    Ok(Tensor::from_vec(values, y.shape(), y.device())?)
}

/// Back-propagates `loss` and fails, naming each variable, when any variable in `varmap`
/// receives no gradient or an all-zero gradient.
pub fn check_all_vars_get_grad(varmap: &VarMap, loss: &Tensor) -> Result<()> {
    let grads = loss.backward()?;
    let data = varmap.data().lock().map_err(|e| Error::Invalid(e.to_string()))?;
    let mut missing = Vec::new();
    for (name, var) in data.iter() {
        match grads.get(var.as_tensor()) {
            None => missing.push(format!("{name} (no gradient)")),
            Some(g) => {
                let peak =
                    g.abs()?.flatten_all()?.max(0)?.to_dtype(DType::F64)?.to_scalar::<f64>()?;
                if peak == 0.0 || !peak.is_finite() {
                    missing.push(format!("{name} (gradient max |g| = {peak})"));
                }
            }
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    missing.sort();
    Err(Error::Invalid(format!("variables without gradient: {}", missing.join(", "))))
}

/// Detached copies of every variable in `varmap`, by name: the parameters to hand to
/// [`check_param_grads`].
pub fn varmap_tensors(varmap: &VarMap) -> Result<HashMap<String, Tensor>> {
    let data = varmap.data().lock().map_err(|e| Error::Invalid(e.to_string()))?;
    Ok(data.iter().map(|(k, v)| (k.clone(), v.as_tensor().detach())).collect())
}

/// Runs [`finite_difference_check`] on every parameter in `params` (f64): the module is
/// rebuilt by `build` from a VarBuilder over `params` with one of them replaced by the
/// probe, and `forward` maps it to an output.
pub fn check_param_grads<M>(
    params: &HashMap<String, Tensor>,
    build: impl Fn(VarBuilder) -> Result<M>,
    forward: impl Fn(&M) -> Result<Tensor>,
    eps: f64,
    tol: f64,
) -> Result<()> {
    let mut names: Vec<_> = params.keys().cloned().collect();
    names.sort();
    for name in names {
        let f = |p: &Tensor| -> Result<Tensor> {
            let mut ts = params.clone();
            ts.insert(name.clone(), p.clone());
            forward(&build(VarBuilder::from_tensors(ts, DType::F64, &Device::Cpu))?)
        };
        finite_difference_check(f, &params[&name], eps, tol)
            .map_err(|e| Error::Invalid(format!("parameter {name}: {e}")))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{softmax_last_dim, Linear, RmsNorm};
    use candle_core::Module;

    /// x -> norm -> proj -> softmax -> weighted sum, with candle's fused rms_norm and/or
    /// softmax_last_dim in place of braid-nn's.
    fn tiny_model_loss(vm: &VarMap, fused_norm: bool, fused_softmax: bool) -> Result<Tensor> {
        let dev = Device::Cpu;
        let vb = VarBuilder::from_varmap(vm, DType::F32, &dev);
        let norm = RmsNorm::new(4, 1e-6, vb.pp("norm"))?;
        let proj = Linear::new(4, 3, true, vb.pp("proj"))?;
        let x = Tensor::randn(0f32, 1., (2, 4), &dev)?;
        let w = Tensor::new(&[1f32, -2., 3.], &dev)?;
        let h = if fused_norm {
            candle_nn::ops::rms_norm(&x, norm.weight(), 1e-6)?
        } else {
            norm.forward(&x)?
        };
        let logits = proj.forward(&h)?;
        let p = if fused_softmax {
            candle_nn::ops::softmax_last_dim(&logits)?
        } else {
            softmax_last_dim(&logits)?
        };
        Ok(p.broadcast_mul(&w)?.sum_all()?)
    }

    fn check(fused_norm: bool, fused_softmax: bool) -> Result<()> {
        let vm = VarMap::new();
        check_all_vars_get_grad(&vm, &tiny_model_loss(&vm, fused_norm, fused_softmax)?)
    }

    #[test]
    fn catches_fused_rms_norm() {
        let msg = check(true, false).unwrap_err().to_string();
        assert!(msg.contains("norm.weight (no gradient)"), "{msg}");
        assert!(!msg.contains("proj."), "{msg}");
    }

    #[test]
    fn catches_fused_softmax() {
        // The fused softmax stops everything upstream of it: the projection and the norm.
        let msg = check(false, true).unwrap_err().to_string();
        assert!(msg.contains("proj.weight (no gradient)") && msg.contains("proj.bias"), "{msg}");
        assert!(msg.contains("norm.weight"), "{msg}");
    }

    #[test]
    fn differentiable_layers_pass() -> Result<()> {
        check(false, false)
    }

    #[test]
    fn finite_differences_catch_a_wrong_gradient() -> Result<()> {
        let x = Tensor::new(&[0.3f64, -1.2, 2.0], &Device::Cpu)?;
        finite_difference_check(|x| Ok(x.sqr()?), &x, 1e-6, 1e-6)?;
        // detach() cuts the graph: autograd sees no gradient while the function still varies.
        let bad = finite_difference_check(|x| Ok((x.detach().sqr()? + x)?), &x, 1e-6, 1e-6);
        assert!(bad.is_err());
        Ok(())
    }
}
