//! The pieces one step of a GRU or LSTM layer shares (`gru.rs`, `lstm.rs`): PyTorch's RNN
//! weight layout and initialisation, and the padding
//! rule (a padded step keeps the state and outputs zeros, as `pack_padded_sequence` does).

use braid_core::Result;
use braid_nn::Linear;
use candle_core::Tensor;
use candle_nn::{Init, VarBuilder};

/// `weight_{suffix} [out, in]` and `bias_{suffix} [out]` under `vb`, initialised like
/// PyTorch's RNNs (uniform in ±1/sqrt(hidden)).
pub(crate) fn rnn_linear(
    input: usize,
    out: usize,
    hidden: usize,
    bias: bool,
    suffix: &str,
    vb: &VarBuilder,
) -> Result<Linear> {
    let bound = 1.0 / (hidden.max(1) as f64).sqrt();
    let init = Init::Uniform { lo: -bound, up: bound };
    let w = vb.get_with_hints((out, input), &format!("weight_{suffix}"), init)?;
    let b =
        if bias { Some(vb.get_with_hints(out, &format!("bias_{suffix}"), init)?) } else { None };
    Linear::from_weights(w, b)
}

/// The mask column of each step, `[batch, 1]` in `like`'s dtype; `None`s without a mask.
pub(crate) fn step_masks(
    mask: Option<&Tensor>,
    b: usize,
    t: usize,
    like: &Tensor,
) -> Result<Vec<Option<Tensor>>> {
    match mask {
        None => Ok(vec![None; t]),
        Some(m) => {
            if m.dims() != [b, t] {
                return Err(braid_core::Error::shape("recurrent mask", &[b, t], m.dims()));
            }
            let m = m.to_dtype(like.dtype())?;
            (0..t).map(|s| Ok(Some(m.narrow(1, s, 1)?))).collect()
        }
    }
}

/// Keeps `old` where the step is padding: returns (next state, output zeroed on padding).
///
/// old, new: [batch, hidden]; m: [batch, 1] -> ([batch, hidden], [batch, hidden])
pub(crate) fn masked_update(
    old: &Tensor,
    new: &Tensor,
    m: Option<&Tensor>,
) -> Result<(Tensor, Tensor)> {
    match m {
        None => Ok((new.clone(), new.clone())),
        Some(m) => {
            let next = (old + (new - old)?.broadcast_mul(m)?)?;
            let out = next.broadcast_mul(m)?;
            Ok((next, out))
        }
    }
}
