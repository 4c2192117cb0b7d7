//! One GRU layer (Cho et al. 2014) in PyTorch's layout and gate order (r, z, n):
//! `r = σ(W_ir x + b_ir + W_hr h + b_hr)`, `z = σ(W_iz x + b_iz + W_hz h + b_hz)`,
//! `n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))`, `h' = (1 - z) ⊙ n + z ⊙ h`.
//! Reference: `torch.nn.GRU`.

use braid_core::Result;
use braid_nn::Linear;
use candle_core::{Module, Tensor};
use candle_nn::VarBuilder;

use braid_nn::activation::sigmoid;

use super::rnn_step::{masked_update, rnn_linear, step_masks};

/// A GRU layer: `weight_ih_lK [3H, in]`, `weight_hh_lK [3H, H]` and their biases.
#[derive(Debug, Clone)]
pub(crate) struct GruLayer {
    ih: Linear,
    hh: Linear,
    hidden: usize,
}

impl GruLayer {
    /// Layer `layer` of a stack, its variables directly under `vb`.
    pub(crate) fn new(
        input: usize,
        hidden: usize,
        bias: bool,
        layer: usize,
        vb: &VarBuilder,
    ) -> Result<Self> {
        Ok(Self {
            ih: rnn_linear(input, 3 * hidden, hidden, bias, &format!("ih_l{layer}"), vb)?,
            hh: rnn_linear(hidden, 3 * hidden, hidden, bias, &format!("hh_l{layer}"), vb)?,
            hidden,
        })
    }

    /// Runs over time from a zero state; padded steps keep the state and output zeros.
    ///
    /// x: [batch, time, input]; mask: [batch, time] of 1/0 -> ([batch, time, hidden], last [batch, hidden])
    pub(crate) fn forward(&self, x: &Tensor, mask: Option<&Tensor>) -> Result<(Tensor, Tensor)> {
        let (b, t, _) = x.dims3()?;
        let hd = self.hidden;
        let gi = self.ih.forward(x)?;
        let masks = step_masks(mask, b, t, x)?;
        let mut h = Tensor::zeros((b, hd), x.dtype(), x.device())?;
        let mut outs = Vec::with_capacity(t);
        for (step, m) in masks.iter().enumerate() {
            let gi_t = gi.narrow(1, step, 1)?.squeeze(1)?;
            let gh = self.hh.forward(&h)?;
            let r = sigmoid(&(gi_t.narrow(1, 0, hd)? + gh.narrow(1, 0, hd)?)?)?;
            let z = sigmoid(&(gi_t.narrow(1, hd, hd)? + gh.narrow(1, hd, hd)?)?)?;
            let n = (gi_t.narrow(1, 2 * hd, hd)? + (r * gh.narrow(1, 2 * hd, hd)?)?)?.tanh()?;
            let new = (&n + (z * (&h - &n)?)?)?;
            let (next, out) = masked_update(&h, &new, m.as_ref())?;
            h = next;
            outs.push(out);
        }
        Ok((Tensor::stack(&outs, 1)?, h))
    }
}
