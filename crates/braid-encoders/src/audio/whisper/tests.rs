use std::path::PathBuf;

use braid_core::Result;
use braid_nn::gradcheck::check_all_vars_get_grad;
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};

use super::*;
use crate::imu::fixture::check;

fn folder(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/whisper").join(name)
}

#[test]
fn two_tiny_configs_match_transformers_using_every_tensor() -> Result<()> {
    for (name, layers) in [("tiny_a", 2isize), ("tiny_b", 3)] {
        let (enc, report) = WhisperEncoder::from_folder(&folder(name), DType::F32, &Device::Cpu)?;
        assert!(report.is_clean() && report.unexpected.is_empty(), "{report}");
        let io = candle_core::safetensors::load(folder(name).join("io.safetensors"), &Device::Cpu)?;
        let x = &io["input_features"];
        check(
            &enc.forward(x)?,
            &io["last_hidden_state"],
            1e-4,
            &format!("whisper {name} last_hidden_state"),
        )?;
        for k in 0..=layers {
            let want = &io[&format!("hidden_states.{k}")];
            check(
                &enc.hidden_state(x, k)?,
                want,
                1e-4,
                &format!("whisper {name} hidden_states[{k}]"),
            )?;
        }
        let second_last = enc.clone().with_layer(-2)?.encode(x, None)?;
        check(
            &second_last.tokens,
            &io[&format!("hidden_states.{}", layers - 1)],
            1e-4,
            "layer -2",
        )?;
        assert!(enc.clone().with_layer(layers + 1).is_err());
    }
    Ok(())
}

#[test]
fn sinusoids_equal_the_stored_positions() -> Result<()> {
    let io =
        candle_core::safetensors::load(folder("tiny_a").join("model.safetensors"), &Device::Cpu)?;
    check(
        &sinusoids(12, 16, &Device::Cpu)?,
        &io["encoder.embed_positions.weight"],
        1e-6,
        "sinusoids",
    )
}

fn tiny() -> WhisperConfig {
    WhisperConfig {
        d_model: 8,
        encoder_layers: 2,
        encoder_attention_heads: 2,
        encoder_ffn_dim: 16,
        num_mel_bins: 4,
        max_source_positions: 5,
        ..Default::default()
    }
}

#[test]
fn shapes_and_bad_frame_counts() -> Result<()> {
    let vm = VarMap::new();
    let enc = WhisperEncoder::new(&tiny(), VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu))?;
    let f = enc.encode(&Tensor::randn(0f32, 1., (3, 4, 10), &Device::Cpu)?, None)?;
    assert_eq!(f.tokens.dims(), [3, 5, 8]);
    let e = enc.encode(&Tensor::zeros((1, 4, 12), DType::F32, &Device::Cpu)?, None).unwrap_err();
    assert!(e.to_string().contains("expected shape [4, 10], got [4, 12]"), "{e}");
    // Not a variable: the key bias is a constant zero.
    assert!(!vm
        .data()
        .lock()
        .map_err(|e| braid_core::Error::Invalid(e.to_string()))?
        .keys()
        .any(|k| k.contains("k_proj.bias")));
    Ok(())
}

#[test]
fn every_variable_gets_a_gradient() -> Result<()> {
    let vm = VarMap::new();
    let enc = WhisperEncoder::new(&tiny(), VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu))?;
    let x = Tensor::randn(0f32, 1., (2, 4, 10), &Device::Cpu)?;
    check_all_vars_get_grad(&vm, &enc.forward(&x)?.sqr()?.sum_all()?)
}
