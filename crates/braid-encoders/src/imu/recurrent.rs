//! Stacked GRU / LSTM encoders for IMU and other time series, loaded from PyTorch's
//! `nn.GRU` / `nn.LSTM` layout (`weight_ih_l0`, `weight_hh_l0`, `bias_ih_l0`,
//! `bias_hh_l0`, ... per layer; batch-first, unidirectional). Padded steps (mask 0) keep
//! the state and output zeros, as `pack_padded_sequence` + `pad_packed_sequence` do.
//! Reference: `torch.nn.GRU`, `torch.nn.LSTM`; the recurrent HAR baselines of
//! Ordóñez and Roggen 2016 (DeepConvLSTM).

use braid_core::{Features, Modality, Result};
use candle_core::Tensor;
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use super::gru::GruLayer;
use super::lstm::LstmLayer;
use crate::Encoder;

/// Which recurrent cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RnnKind {
    /// Gated recurrent unit.
    #[default]
    Gru,
    /// Long short-term memory.
    Lstm,
}

/// The arguments of `torch.nn.GRU` / `torch.nn.LSTM` that Braid supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RecurrentConfig {
    /// GRU or LSTM.
    pub kind: RnnKind,
    /// Channels per time step.
    pub input_size: usize,
    /// State width.
    pub hidden_size: usize,
    /// Stacked layers.
    pub num_layers: usize,
    /// `bias_ih_lK` / `bias_hh_lK` present.
    pub bias: bool,
}

impl Default for RecurrentConfig {
    fn default() -> Self {
        Self { kind: RnnKind::Gru, input_size: 6, hidden_size: 128, num_layers: 2, bias: true }
    }
}

#[derive(Debug, Clone)]
enum Layer {
    Gru(GruLayer),
    Lstm(LstmLayer),
}

/// A stack of recurrent layers; variables directly under its prefix, as in PyTorch.
#[derive(Debug, Clone)]
pub struct Recurrent {
    layers: Vec<Layer>,
    cfg: RecurrentConfig,
}

impl Recurrent {
    /// Builds `cfg.num_layers` layers from `vb` (missing variables: PyTorch's uniform init).
    pub fn new(cfg: RecurrentConfig, vb: VarBuilder) -> Result<Self> {
        let layers = (0..cfg.num_layers)
            .map(|k| {
                let input = if k == 0 { cfg.input_size } else { cfg.hidden_size };
                Ok(match cfg.kind {
                    RnnKind::Gru => {
                        Layer::Gru(GruLayer::new(input, cfg.hidden_size, cfg.bias, k, &vb)?)
                    }
                    RnnKind::Lstm => {
                        Layer::Lstm(LstmLayer::new(input, cfg.hidden_size, cfg.bias, k, &vb)?)
                    }
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { layers, cfg })
    }

    /// The configuration.
    pub fn config(&self) -> &RecurrentConfig {
        &self.cfg
    }

    /// x: [batch, time, input]; mask: [batch, time] of 1/0 ->
    /// (top layer's outputs [batch, time, hidden], its state after each sequence's last real step [batch, hidden])
    pub fn forward(&self, x: &Tensor, mask: Option<&Tensor>) -> Result<(Tensor, Tensor)> {
        let mut h = x.clone();
        let mut last = None;
        for layer in &self.layers {
            let (seq, l) = match layer {
                Layer::Gru(g) => g.forward(&h, mask)?,
                Layer::Lstm(l) => l.forward(&h, mask)?,
            };
            h = seq;
            last = Some(l);
        }
        let (b, _, _) = x.dims3()?;
        let last = match last {
            Some(l) => l,
            None => Tensor::zeros((b, self.cfg.hidden_size), x.dtype(), x.device())?,
        };
        Ok((h, last))
    }
}

/// A recurrent IMU encoder: the stack under `rnn`, its per-step outputs as tokens.
#[derive(Debug, Clone)]
pub struct RecurrentEncoder {
    rnn: Recurrent,
}

impl RecurrentEncoder {
    /// Builds the stack under `vb.pp("rnn")`.
    pub fn new(cfg: RecurrentConfig, vb: VarBuilder) -> Result<Self> {
        Ok(Self { rnn: Recurrent::new(cfg, vb.pp("rnn"))? })
    }

    /// The recurrent stack.
    pub fn rnn(&self) -> &Recurrent {
        &self.rnn
    }
}

impl Encoder for RecurrentEncoder {
    fn modality(&self) -> Modality {
        Modality::Imu
    }

    fn output_dim(&self) -> usize {
        self.rnn.cfg.hidden_size
    }

    /// input: [batch, time, channels]; mask: [batch, time] -> tokens [batch, time, hidden]
    fn encode(&self, input: &Tensor, mask: Option<&Tensor>) -> Result<Features> {
        let (seq, _) = self.rnn.forward(input, mask)?;
        Features::new(seq, mask.cloned())
    }
}

#[cfg(test)]
mod tests;
