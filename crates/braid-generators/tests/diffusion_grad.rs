//! Gradients reach every variable of the UNet (both block kinds, convolution and linear
//! transformer projections), the VAE and the text encoder, so each trains.
#![allow(clippy::unwrap_used)]

use braid_encoders::text::{ClipText, ClipTextConfig};
use braid_generators::diffusion::config::{BlockKind, PerBlock};
use braid_generators::diffusion::{AutoencoderKl, UNet2DCondition, UNetConfig, VaeConfig};
use braid_nn::gradcheck::check_all_vars_get_grad;
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};

fn unet_cfg(linear: bool) -> UNetConfig {
    UNetConfig {
        sample_size: 8,
        in_channels: 3,
        out_channels: 3,
        down_block_types: vec![BlockKind::Plain, BlockKind::CrossAttn],
        up_block_types: vec![BlockKind::CrossAttn, BlockKind::Plain],
        block_out_channels: vec![8, 16],
        layers_per_block: 1,
        attention_head_dim: PerBlock::Each(vec![2, 4]),
        cross_attention_dim: 12,
        norm_num_groups: 4,
        use_linear_projection: linear,
        ..UNetConfig::default()
    }
}

#[test]
fn every_unet_and_text_encoder_variable_gets_gradient() {
    let dev = Device::Cpu;
    for linear in [false, true] {
        let vm = VarMap::new();
        let vb = VarBuilder::from_varmap(&vm, DType::F32, &dev);
        let text_cfg = ClipTextConfig {
            vocab_size: 10,
            hidden_size: 12,
            intermediate_size: 16,
            num_hidden_layers: 1,
            num_attention_heads: 2,
            max_position_embeddings: 5,
            eos_token_id: 1,
            ..ClipTextConfig::default()
        };
        let text = ClipText::new(&text_cfg, vb.pp("text")).unwrap();
        let unet = UNet2DCondition::new(&unet_cfg(linear), vb.pp("unet")).unwrap();
        let ids = Tensor::new(&[[0u32, 4, 7, 1, 1], [0, 9, 2, 3, 1]], &dev).unwrap();
        let cond = text.forward(&ids, None).unwrap();
        let x = Tensor::randn(0f32, 1.0, (2, 3, 8, 8), &dev).unwrap();
        let t = Tensor::new(&[10f32, 700.], &dev).unwrap();
        let y = unet.forward(&x, &t, &cond).unwrap();
        assert_eq!(y.dims(), [2, 3, 8, 8]);
        let loss = y.sqr().unwrap().mean_all().unwrap();
        check_all_vars_get_grad(&vm, &loss).unwrap();
    }
}

#[test]
fn every_vae_variable_gets_gradient() {
    let dev = Device::Cpu;
    let vm = VarMap::new();
    let cfg = VaeConfig {
        down_block_types: vec!["DownEncoderBlock2D".into(); 2],
        up_block_types: vec!["UpDecoderBlock2D".into(); 2],
        block_out_channels: vec![8, 16],
        norm_num_groups: 4,
        ..VaeConfig::default()
    };
    let vae = AutoencoderKl::new(&cfg, VarBuilder::from_varmap(&vm, DType::F32, &dev)).unwrap();
    let x = Tensor::randn(0f32, 1.0, (1, 3, 8, 8), &dev).unwrap();
    let (mean, logvar) = vae.encode(&x).unwrap();
    let rec = vae.decode(&mean).unwrap();
    assert_eq!(rec.dims(), [1, 3, 8, 8]);
    let loss = ((rec - x).unwrap().sqr().unwrap().mean_all().unwrap()
        + logvar.exp().unwrap().mean_all().unwrap())
    .unwrap();
    check_all_vars_get_grad(&vm, &loss).unwrap();
}
