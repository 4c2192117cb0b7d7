use braid_core::Result;
use braid_nn::gradcheck::check_all_vars_get_grad;
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};

use super::*;
use crate::imu::fixture::{self, check};

fn cfg(kind: RnnKind) -> RecurrentConfig {
    RecurrentConfig { kind, input_size: 6, hidden_size: 5, num_layers: 2, bias: true }
}

#[test]
fn gru_and_lstm_match_pytorch_with_padding() -> Result<()> {
    let f = fixture::load("imu/rnn.safetensors")?;
    let (x, mask) = (f.get("x")?, f.get("mask")?);
    for (name, kind) in [("gru", RnnKind::Gru), ("lstm", RnnKind::Lstm)] {
        let (vb, tracker) = f.vb();
        let rnn = Recurrent::new(cfg(kind), vb.pp(name))?;
        let (seq, last) = rnn.forward(&x, Some(&mask))?;
        check(&seq, &f.get(&format!("{name}_out"))?, 1e-5, name)?;
        check(&last, &f.get(&format!("{name}_last"))?, 1e-5, name)?;
        f.assert_used(&tracker, &format!("{name}."))?;
    }
    Ok(())
}

#[test]
fn encoder_shapes() -> Result<()> {
    for kind in [RnnKind::Gru, RnnKind::Lstm] {
        let vm = VarMap::new();
        let enc = RecurrentEncoder::new(
            cfg(kind),
            VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu),
        )?;
        let x = Tensor::randn(0f32, 1., (3, 9, 6), &Device::Cpu)?;
        let f = enc.encode(&x, None)?;
        assert_eq!(f.tokens.dims(), [3, 9, 5]);
        assert_eq!(enc.output_dim(), 5);
        let bad_mask = Tensor::ones((3, 8), DType::F32, &Device::Cpu)?;
        assert!(enc.encode(&x, Some(&bad_mask)).is_err());
    }
    Ok(())
}

#[test]
fn every_variable_gets_a_gradient() -> Result<()> {
    for kind in [RnnKind::Gru, RnnKind::Lstm] {
        let vm = VarMap::new();
        let enc = RecurrentEncoder::new(
            cfg(kind),
            VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu),
        )?;
        let x = Tensor::randn(0f32, 1., (2, 4, 6), &Device::Cpu)?;
        let f = enc.encode(&x, None)?;
        check_all_vars_get_grad(&vm, &f.tokens.sqr()?.sum_all()?)?;
    }
    Ok(())
}
