//! Inputs and losses shared by the projector tests.

use braid_core::{Features, Result};
use candle_core::{DType, Device, Tensor};

/// Random features `[b, n, d]`; with `padded`, the second sequence's last two tokens are padding.
pub fn features(b: usize, n: usize, d: usize, padded: bool) -> Result<Features> {
    let tokens = Tensor::randn(0f32, 1.0, (b, n, d), &Device::Cpu)?;
    let mask = if padded {
        let keep: Vec<f32> = (0..b)
            .flat_map(|i| (0..n).map(move |j| if i == 1 && j + 2 >= n { 0.0 } else { 1.0 }))
            .collect();
        Some(Tensor::from_vec(keep, (b, n), &Device::Cpu)?)
    } else {
        None
    };
    Features::new(tokens, mask)
}

/// A scalar that depends on every output element non-trivially: sum of squares plus a
/// position-weighted sum (so LayerNorm outputs still carry gradient).
pub fn loss(out: &Features) -> Result<Tensor> {
    let t = &out.tokens;
    let w = Tensor::arange(0f32, t.elem_count() as f32, t.device())?
        .reshape(t.shape())?
        .to_dtype(DType::F32)?;
    let w = (w * 0.01)?.sin()?;
    Ok((t.sqr()?.sum_all()? + t.mul(&w)?.sum_all()?)?)
}
