//! IMU and time-series encoders, input `[batch, time, channels]` (standardised by
//! `braid_data::imu::ChannelStats`): recurrent ([`RecurrentEncoder`], GRU / LSTM in
//! PyTorch's layout), a conv1d patch tokenizer + transformer ([`PatchTransformer`],
//! OneLLM / ImageBind style) and a small 1D CNN ([`Cnn1d`]).

mod cnn;
mod gru;
mod lstm;
mod patch;
mod recurrent;
mod rnn_step;
mod transformer;

#[cfg(test)]
pub(crate) mod fixture;

pub use cnn::{Cnn1d, Cnn1dConfig};
pub use patch::{PatchTransformer, PatchTransformerConfig};
pub use recurrent::{Recurrent, RecurrentConfig, RecurrentEncoder, RnnKind};
pub(crate) use transformer::token_mask;
pub use transformer::{TokenTransformer, TokenTransformerConfig};
