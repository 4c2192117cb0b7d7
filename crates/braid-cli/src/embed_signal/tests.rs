use std::path::PathBuf;

use braid_core::checkpoint::read_npy;
use braid_encoders::imu::{
    PatchTransformerConfig, RecurrentConfig, RnnKind, TokenTransformerConfig,
};
use braid_encoders::EncoderConfig;
use braid_pipeline::{EncoderSlot, PipelineConfig};

/// An encoder-only model directory (`pipeline.toml` with one IMU slot) at `dir`.
fn imu_model(dir: &std::path::Path, encoder: EncoderConfig) {
    let slot = EncoderSlot {
        modality: Modality::Imu,
        model: None,
        placeholder: None,
        token_id: None,
        encoder: Some(encoder),
        preprocess: None,
        projector: None,
    };
    let cfg = PipelineConfig { encoders: vec![slot], ..Default::default() };
    Pipeline::init(&cfg, dir, &Device::Cpu).unwrap().save(dir).unwrap();
}

use super::*;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

#[test]
fn embeds_imu_windows_with_saved_statistics() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    let cfg = EncoderConfig::Recurrent(RecurrentConfig {
        kind: RnnKind::Gru,
        input_size: 2,
        hidden_size: 4,
        num_layers: 1,
        bias: true,
    });
    imu_model(&model, cfg);
    let csv = dir.path().join("x.csv");
    let body: String = (0..10).map(|i| format!("{i},{}\n", i * 2)).collect();
    std::fs::write(&csv, format!("ax,ay\n{body}")).unwrap();
    let out = dir.path().join("e.npy");
    let mut a = ImuArgs {
        model: model.clone(),
        input: vec![csv],
        out: out.clone(),
        window: Some(4),
        stride: Some(2),
        pool: Pool::Mean,
    };
    embed_imu(&a).unwrap();
    assert_eq!(read_npy(&out).unwrap().shape, [4, 4]); // windows at 0, 2, 4, 6
    a.pool = Pool::None;
    embed_imu(&a).unwrap();
    assert_eq!(read_npy(&out).unwrap().shape, [4, 4, 4]);
}

#[test]
fn embeds_variable_length_ts_cases_with_a_patch_transformer() {
    let dir = tempfile::tempdir().unwrap();
    let transformer = TokenTransformerConfig {
        hidden_size: 8,
        intermediate_size: 16,
        num_layers: 1,
        num_heads: 2,
        max_positions: 32,
        ..Default::default()
    };
    let cfg = EncoderConfig::ImuPatch(PatchTransformerConfig {
        channels: 2,
        patch_size: 2,
        stride: 2,
        patch_bias: false,
        transformer,
    });
    imu_model(dir.path(), cfg);
    let ts = dir.path().join("t.ts");
    std::fs::write(&ts, "@dimensions 2\n@equalLength false\n@classLabel true a b\n@data\n1,2,3,4:5,6,7,8:a\n1,2,3,4,5,6:5,6,7,8,9,9:b\n").unwrap();
    let out = dir.path().join("e.npy");
    let a = ImuArgs {
        model: dir.path().to_path_buf(),
        input: vec![ts],
        out: out.clone(),
        window: None,
        stride: None,
        pool: Pool::Mean,
    };
    embed_imu(&a).unwrap();
    assert_eq!(read_npy(&out).unwrap().shape, [2, 8]);
}

#[test]
fn embeds_speech_with_a_tiny_whisper() {
    // tiny_a has 12 positions = 24 frames: 1 s at 2400 Hz with a 100-sample hop.
    let dir = tempfile::tempdir().unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(fixtures().join("whisper/tiny_a").join(f), dir.path().join(f)).unwrap();
    }
    let pre = r#"{"feature_size": 80, "sampling_rate": 2400, "hop_length": 100, "chunk_length": 1, "n_fft": 200}"#;
    std::fs::write(dir.path().join("preprocessor_config.json"), pre).unwrap();
    let out = dir.path().join("a.npy");
    let wav = fixtures().join("audio/speech_16k.wav");
    let mut a = AudioArgs {
        model: dir.path().display().to_string(),
        input: vec![wav.clone(), wav],
        out: out.clone(),
        pool: Pool::Mean,
        layer: -1,
    };
    embed_audio(&a).unwrap();
    assert_eq!(read_npy(&out).unwrap().shape, [2, 16]);
    a.pool = Pool::None;
    a.layer = -2;
    embed_audio(&a).unwrap();
    assert_eq!(read_npy(&out).unwrap().shape, [2, 12, 16]);
}

#[test]
fn embeds_a_frame_folder_and_a_gif_with_clip() {
    let dir = tempfile::tempdir().unwrap();
    let frames = dir.path().join("frames");
    std::fs::create_dir(&frames).unwrap();
    for (i, name) in ["flower.jpg", "china.jpg", "gray.png", "rgba.png"].iter().enumerate() {
        std::fs::copy(fixtures().join("image").join(name), frames.join(format!("{i}_{name}")))
            .unwrap();
    }
    // A one-frame GIF: uniform sampling repeats it.
    let gif = fixtures().join("image/palette.gif");
    let out = dir.path().join("v.npy");
    let clip = fixtures().join("clip/p8_40").display().to_string();
    let mut a = VideoArgs {
        model: clip,
        input: vec![frames, gif],
        out: out.clone(),
        frames: 3,
        fps: None,
        pool: Pool::Mean,
    };
    embed_video(&a).unwrap();
    let shape = read_npy(&out).unwrap().shape;
    assert_eq!((shape.len(), shape[0]), (2, 2));
    a.pool = Pool::None;
    embed_video(&a).unwrap();
    assert_eq!(read_npy(&out).unwrap().shape[..2], [2, 3]);
}
