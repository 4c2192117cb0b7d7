use std::process::Command;

use braid_core::Result;
use braid_data::image::{ImageProcessor, ImageProcessorConfig};
use braid_data::video::{frames_tensor, load_video, FrameSampling, VideoOptions};
use braid_nn::gradcheck::check_all_vars_get_grad;
use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{Conv2d, Conv2dConfig, VarMap};
use image::{Rgb, RgbImage};

use super::*;
use crate::image::{Vit, VitConfig};

fn tiny_vit(vm: &VarMap) -> Result<Vit> {
    let cfg = VitConfig {
        hidden_size: 16,
        intermediate_size: 32,
        num_hidden_layers: 2,
        num_attention_heads: 2,
        image_size: 32,
        patch_size: 8,
        ..Default::default()
    };
    Vit::new(&cfg, VarBuilder::from_varmap(vm, DType::F32, &Device::Cpu))
}

/// A minimal image encoder whose every variable reaches the output: 4x4 patch conv tokens.
struct PatchConv(Conv2d);

impl Encoder for PatchConv {
    fn modality(&self) -> Modality {
        Modality::Image
    }
    fn output_dim(&self) -> usize {
        8
    }
    fn encode(&self, input: &Tensor, _mask: Option<&Tensor>) -> Result<Features> {
        Features::new(self.0.forward(input)?.flatten_from(2)?.transpose(1, 2)?, None)
    }
}

#[test]
fn shapes_for_every_pooling() -> Result<()> {
    let x = Tensor::randn(0f32, 1., (2, 3, 3, 32, 32), &Device::Cpu)?;
    let mask = Tensor::new(&[[1f32, 1., 1.], [1., 1., 0.]], &Device::Cpu)?;
    for (pooling, n) in [
        (TemporalPoolingConfig::Mean, 1),
        (TemporalPoolingConfig::Attention { heads: 2 }, 1),
        (TemporalPoolingConfig::None, 3),
    ] {
        let vm = VarMap::new();
        let enc = VideoEncoder::new(
            tiny_vit(&vm)?,
            FrameToken::Cls,
            pooling,
            VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu),
        )?;
        let f = enc.encode(&x, Some(&mask))?;
        assert_eq!(f.tokens.dims(), [2, n, 16], "{pooling:?}");
        assert_eq!(enc.modality(), Modality::Video);
    }
    Ok(())
}

#[test]
fn every_variable_gets_a_gradient() -> Result<()> {
    let vm = VarMap::new();
    let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
    let conv = candle_nn::conv2d(
        3,
        8,
        4,
        Conv2dConfig { stride: 4, ..Default::default() },
        vb.pp("image"),
    )?;
    let pooling = TemporalPoolingConfig::Attention { heads: 2 };
    let enc = VideoEncoder::new(PatchConv(conv), FrameToken::Mean, pooling, vb)?;
    let x = Tensor::randn(0f32, 1., (2, 3, 3, 8, 8), &Device::Cpu)?;
    check_all_vars_get_grad(&vm, &enc.encode(&x, None)?.tokens.sqr()?.sum_all()?)
}

/// easy-VQA-like 64x64 frames: a coloured shape moving over a light background.
fn shape_frames(n: usize) -> Vec<RgbImage> {
    (0..n)
        .map(|t| {
            RgbImage::from_fn(64, 64, |x, y| {
                let (cx, cy) = (14 + 5 * t as u32, 30);
                match (
                    x.abs_diff(cx) < 9 && y.abs_diff(cy) < 9,
                    (x as f32 - 40.0).hypot(y as f32 - 48.0) < 8.0,
                ) {
                    (true, _) => Rgb([30, 90, 200]),
                    (_, true) => Rgb([40, 170, 60]),
                    _ => Rgb([240, 236, 225]),
                }
            })
        })
        .collect()
}

#[test]
fn mp4_frames_give_the_png_frames_features() -> Result<()> {
    if !Command::new("ffmpeg").arg("-version").output().is_ok_and(|o| o.status.success()) {
        assert!(
            std::env::var("BRAID_REQUIRE_ASSETS").as_deref() != Ok("1"),
            "BRAID_REQUIRE_ASSETS=1 but ffmpeg is missing"
        );
        eprintln!("note: skipping: ffmpeg is not installed");
        return Ok(());
    }
    let dir = tempfile::tempdir().map_err(|e| braid_core::Error::io("tempdir", e))?;
    let frames = shape_frames(6);
    for (i, f) in frames.iter().enumerate() {
        f.save(dir.path().join(format!("{i:03}.png")))
            .map_err(|e| braid_core::Error::Invalid(e.to_string()))?;
    }
    let clip = dir.path().join("clip.mp4");
    let ok = Command::new("ffmpeg")
        .args(["-y", "-v", "error", "-framerate", "6", "-i"])
        .arg(dir.path().join("%03d.png"))
        .args(["-c:v", "libx264", "-pix_fmt", "yuv420p"])
        .arg(&clip)
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "ffmpeg could not make the MP4");
    let cfg: ImageProcessorConfig =
        serde_json::from_str(r#"{"size": {"height": 32, "width": 32}}"#)
            .map_err(|e| braid_core::Error::Invalid(e.to_string()))?;
    let proc = ImageProcessor::new(cfg)?;
    let opts =
        VideoOptions { sampling: FrameSampling::Uniform { frames: 6 }, ..Default::default() };
    let vm = VarMap::new();
    let enc = VideoEncoder::new(
        tiny_vit(&vm)?,
        FrameToken::Cls,
        TemporalPoolingConfig::None,
        VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu),
    )?;
    let feats = |path: &std::path::Path| -> Result<Tensor> {
        let v = load_video(path, &opts)?;
        Ok(enc
            .frame_features(&frames_tensor(&v.frames, &proc, &Device::Cpu)?.unsqueeze(0)?)?
            .squeeze(0)?)
    };
    let (png, mp4) = (feats(dir.path())?, feats(&clip)?);
    let diff = braid_core::testing::max_abs_diff(&png, &mp4)?;
    // Decoding changes pixels by ~1.5 levels; different frames differ far more.
    let between = braid_core::testing::max_abs_diff(&png.narrow(0, 0, 5)?, &png.narrow(0, 1, 5)?)?;
    let scale = png.abs()?.max_all()?.to_scalar::<f32>()?;
    eprintln!("per-frame features (scale {scale:.3}): PNG vs MP4 max abs diff {diff:.4}; neighbouring frames {between:.4}");
    assert!(
        diff < 0.01 * scale && diff < between / 2.0,
        "PNG vs MP4 {diff}, neighbouring frames {between}"
    );
    Ok(())
}
