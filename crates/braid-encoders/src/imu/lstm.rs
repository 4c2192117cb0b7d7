//! One LSTM layer (Hochreiter and Schmidhuber 1997) in PyTorch's layout and gate order
//! (i, f, g, o): `c' = f ⊙ c + i ⊙ g`, `h' = o ⊙ tanh(c')`. Reference: `torch.nn.LSTM`.

use braid_core::Result;
use braid_nn::Linear;
use candle_core::{Module, Tensor};
use candle_nn::VarBuilder;

use braid_nn::activation::sigmoid;

use super::rnn_step::{masked_update, rnn_linear, step_masks};

/// An LSTM layer: `weight_ih_lK [4H, in]`, `weight_hh_lK [4H, H]` and their biases.
#[derive(Debug, Clone)]
pub(crate) struct LstmLayer {
    ih: Linear,
    hh: Linear,
    hidden: usize,
}

impl LstmLayer {
    /// Layer `layer` of a stack, its variables directly under `vb`.
    pub(crate) fn new(
        input: usize,
        hidden: usize,
        bias: bool,
        layer: usize,
        vb: &VarBuilder,
    ) -> Result<Self> {
        Ok(Self {
            ih: rnn_linear(input, 4 * hidden, hidden, bias, &format!("ih_l{layer}"), vb)?,
            hh: rnn_linear(hidden, 4 * hidden, hidden, bias, &format!("hh_l{layer}"), vb)?,
            hidden,
        })
    }

    /// Runs over time from zero states; padded steps keep the states and output zeros.
    ///
    /// x: [batch, time, input]; mask: [batch, time] of 1/0 -> ([batch, time, hidden], last h [batch, hidden])
    pub(crate) fn forward(&self, x: &Tensor, mask: Option<&Tensor>) -> Result<(Tensor, Tensor)> {
        let (b, t, _) = x.dims3()?;
        let hd = self.hidden;
        let gi = self.ih.forward(x)?;
        let masks = step_masks(mask, b, t, x)?;
        let mut h = Tensor::zeros((b, hd), x.dtype(), x.device())?;
        let mut c = h.clone();
        let mut outs = Vec::with_capacity(t);
        for (step, m) in masks.iter().enumerate() {
            let g = (gi.narrow(1, step, 1)?.squeeze(1)? + self.hh.forward(&h)?)?;
            let i = sigmoid(&g.narrow(1, 0, hd)?)?;
            let f = sigmoid(&g.narrow(1, hd, hd)?)?;
            let cand = g.narrow(1, 2 * hd, hd)?.tanh()?;
            let o = sigmoid(&g.narrow(1, 3 * hd, hd)?)?;
            let c_new = ((f * &c)? + (i * cand)?)?;
            let h_new = (o * c_new.tanh()?)?;
            c = masked_update(&c, &c_new, m.as_ref())?.0;
            let (next, out) = masked_update(&h, &h_new, m.as_ref())?;
            h = next;
            outs.push(out);
        }
        Ok((Tensor::stack(&outs, 1)?, h))
    }
}
