#![allow(clippy::unwrap_used)]
use braid_generators::diffusion::config::{BlockKind, PerBlock};
use braid_generators::diffusion::{UNet2DCondition, UNetConfig};
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
fn main() {
    let args: Vec<usize> = std::env::args().skip(1).map(|a| a.parse().unwrap()).collect();
    let (b, side, c0) = (args[0], args[1], args[2]);
    use BlockKind::*;
    let cfg = UNetConfig {
        sample_size: side,
        in_channels: 3,
        out_channels: 3,
        down_block_types: if std::env::var("NOATT").is_ok() {
            vec![Plain, Plain, Plain]
        } else {
            vec![Plain, CrossAttn, CrossAttn]
        },
        up_block_types: if std::env::var("NOATT").is_ok() {
            vec![Plain, Plain, Plain]
        } else {
            vec![CrossAttn, CrossAttn, Plain]
        },
        block_out_channels: vec![c0, 2 * c0, 2 * c0],
        layers_per_block: 1,
        attention_head_dim: PerBlock::One(4),
        cross_attention_dim: 64,
        norm_num_groups: 8,
        ..UNetConfig::default()
    };
    let vm = VarMap::new();
    let unet =
        UNet2DCondition::new(&cfg, VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu)).unwrap();
    let n: usize = vm.all_vars().iter().map(|v| v.elem_count()).sum();
    println!("params {n}");
    let x = Tensor::randn(0f32, 1., (b, 3, side, side), &Device::Cpu).unwrap();
    let t = Tensor::rand(0f32, 999., b, &Device::Cpu).unwrap();
    let ctx = Var::randn(0f32, 1., (b, 8, 64), &Device::Cpu).unwrap();
    for i in 0..4 {
        let s = std::time::Instant::now();
        let y = unet.forward(&x, &t, ctx.as_tensor()).unwrap();
        let f = s.elapsed().as_secs_f64();
        let loss = y.sqr().unwrap().mean_all().unwrap();
        let g = loss.backward().unwrap();
        drop(g);
        println!("step {i}: fwd {f:.3}s total {:.3}s", s.elapsed().as_secs_f64());
    }
}
