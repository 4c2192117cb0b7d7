//! A [`Pipeline`] from `pipeline.toml`: placeholder splicing with several images and an
//! IMU window, a model directory saved and loaded back, and bad inputs.
#![allow(clippy::unwrap_used)]

use braid_core::Modality;
use braid_pipeline::{Input, Pipeline, PipelineConfig, PIPELINE_FILE};
use candle_core::{Device, Tensor};

const IMAGE: u32 = 60;
const IMU: u32 = 61;

const TOML: &str = r#"
llm = "tiny-llama"

[llm_config]
vocab_size = 64
hidden_size = 32
intermediate_size = 48
num_hidden_layers = 2
num_attention_heads = 4
num_key_value_heads = 2
max_position_embeddings = 128

[[encoders]]
modality = "image"
model = "tiny-vit"
token_id = 60
[encoders.encoder]
type = "vit"
feature_layer = -2
vit = { hidden_size = 16, intermediate_size = 24, num_hidden_layers = 2, num_attention_heads = 2, image_size = 16, patch_size = 4 }
[encoders.projector]
type = "mlp"

[[encoders]]
modality = "imu"
model = "tiny-imu"
token_id = 61
[encoders.encoder]
type = "imu_patch"
channels = 6
patch_size = 4
stride = 4
transformer = { hidden_size = 16, intermediate_size = 24, num_layers = 1, num_heads = 2, max_positions = 16 }
[encoders.projector]
type = "resampler"
num_queries = 3
heads = 2
"#;

fn config(text: &str) -> PipelineConfig {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(PIPELINE_FILE);
    std::fs::write(&path, text).unwrap();
    PipelineConfig::load(&path).unwrap()
}

fn image() -> Input {
    let data = Tensor::randn(0f32, 1., (1, 3, 16, 16), &Device::Cpu).unwrap();
    Input { modality: Modality::Image, data, mask: None }
}

fn imu() -> Input {
    let data = Tensor::randn(0f32, 1., (1, 32, 6), &Device::Cpu).unwrap();
    Input { modality: Modality::Imu, data, mask: None }
}

#[test]
fn splices_two_images_and_an_imu_window_and_round_trips_through_a_directory() {
    let pipeline = Pipeline::init(&config(TOML), std::path::Path::new("."), &Device::Cpu).unwrap();
    let ids = [1, IMAGE, 5, IMAGE, 7, IMU, 9];
    let inputs = [image(), image(), imu()];
    let logits = pipeline.forward(&ids, &inputs).unwrap().logits;
    // 4 text ids + 2 images of 16 patches (class token dropped) + 3 resampler queries.
    assert_eq!(logits.dims(), &[1, 4 + 2 * 16 + 3, 64]);

    let dir = tempfile::tempdir().unwrap();
    pipeline.save(dir.path()).unwrap();
    for f in [
        "pipeline.toml",
        "llm.safetensors",
        "encoder.image.safetensors",
        "projector.image.safetensors",
        "encoder.imu.safetensors",
        "projector.imu.safetensors",
    ] {
        assert!(dir.path().join(f).is_file(), "{f} not written");
    }
    let loaded = Pipeline::open(
        dir.path(),
        braid_pipeline::Weights::Trainable(candle_core::DType::F32),
        &Device::Cpu,
    )
    .unwrap();
    assert_eq!(loaded.config(), pipeline.config());
    let again = loaded.forward(&ids, &inputs).unwrap().logits;
    let diff: f32 = (&again - &logits)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar()
        .unwrap();
    assert_eq!(diff, 0.0);

    // A component file with a tensor too many is refused, naming it.
    let vars = candle_nn::VarMap::new();
    let vb = candle_nn::VarBuilder::from_varmap(&vars, candle_core::DType::F32, &Device::Cpu);
    vb.get(2, "stray").unwrap();
    vars.save(dir.path().join("projector.imu.safetensors")).unwrap();
    let err = Pipeline::open(
        dir.path(),
        braid_pipeline::Weights::Trainable(candle_core::DType::F32),
        &Device::Cpu,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("stray"), "{err}");
}

#[test]
fn placeholder_and_input_counts_must_agree() {
    let pipeline = Pipeline::init(&config(TOML), std::path::Path::new("."), &Device::Cpu).unwrap();
    let err = pipeline.forward(&[1, IMAGE, 2, IMAGE], &[image()]).unwrap_err().to_string();
    assert!(err.contains("2 image placeholders") && err.contains("1 image inputs"), "{err}");
}

#[test]
fn an_image_for_a_model_without_a_vision_encoder_is_an_error() {
    let imu_only = TOML
        .split("[[encoders]]")
        .enumerate()
        .filter(|(i, _)| *i != 1)
        .map(|(_, s)| s)
        .collect::<Vec<_>>()
        .join("[[encoders]]");
    let pipeline =
        Pipeline::init(&config(&imu_only), std::path::Path::new("."), &Device::Cpu).unwrap();
    let err = pipeline.forward(&[1, IMAGE, IMU], &[image(), imu()]).unwrap_err().to_string();
    assert!(err.contains("no image encoder") && err.contains("imu"), "{err}");
}

#[test]
fn gradients_reach_every_encoder_and_projector_through_the_splice() {
    let pipeline = Pipeline::init(&config(TOML), std::path::Path::new("."), &Device::Cpu).unwrap();
    let out = pipeline.forward(&[1, IMAGE, 5, IMU], &[image(), imu()]).unwrap();
    let loss = out.logits.sqr().unwrap().mean_all().unwrap();
    // The ViT's last layer and post_layernorm lie past feature layer -2: no gradient by design.
    for (name, vars) in pipeline.var_maps().into_iter().filter(|(n, _)| n != "encoder.image") {
        let res = braid_nn::gradcheck::check_all_vars_get_grad(vars, &loss);
        assert!(res.is_ok(), "{name}: {res:?}");
    }
}

/// A model directory on a language model loaded from a folder (the tiny Qwen2 fixture),
/// with an IMU encoder and LoRA whose B is non-zero: opened frozen (LoRA beside the
/// frozen layers, the placeholder `<imu>` added to the tokenizer) it gives the logits the
/// trainable body gives.
#[test]
fn a_directory_opened_frozen_gives_the_trainable_logits() {
    let qwen = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/llm/qwen2_chat_tiny");
    let text = format!(
        "llm = {:?}\n[lora]\nrank = 2\nalpha = 4.0\n[[encoders]]\nmodality = \"imu\"\n[encoders.encoder]\ntype = \"imu_patch\"\nchannels = 6\npatch_size = 4\nstride = 4\ntransformer = {{ hidden_size = 16, intermediate_size = 24, num_layers = 1, num_heads = 2, max_positions = 16 }}\n[encoders.projector]\ntype = \"linear\"\n",
        qwen.display().to_string()
    );
    let trained = Pipeline::init(&config(&text), std::path::Path::new("."), &Device::Cpu).unwrap();
    for (name, vars) in trained.var_maps() {
        if name == "lora" {
            for v in vars.all_vars() {
                v.set(&Tensor::randn(0f32, 0.1, v.shape(), &Device::Cpu).unwrap()).unwrap();
            }
        }
    }
    let dir = tempfile::tempdir().unwrap();
    trained.save(dir.path()).unwrap();
    let open = |w| Pipeline::open(dir.path(), w, &Device::Cpu).unwrap();
    let (frozen, trainable) = (
        open(braid_pipeline::Weights::Frozen { dequantize: false }),
        open(braid_pipeline::Weights::Trainable(candle_core::DType::F32)),
    );
    assert!(!frozen.llm().unwrap().is_trainable() && trainable.llm().unwrap().is_trainable());
    let prompter = frozen.prompter().unwrap();
    let ids = prompter
        .prompt_ids(&braid_pipeline::qa_messages(&[Modality::Imu], &[], Some("what is it?")))
        .unwrap();
    let x = imu();
    let (a, b) = (
        frozen.forward(&ids, std::slice::from_ref(&x)).unwrap().logits,
        trainable.forward(&ids, std::slice::from_ref(&x)).unwrap().logits,
    );
    let scale = b.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    let diff = (a - &b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    // Fused kernels against composed ones, through an untrained random model whose
    // activations are large: 2.2e-4 of the scale seen at worst; a LoRA left out would
    // move the logits by a tenth of their scale or more.
    assert!(diff <= 1e-3 * scale.max(1.0), "frozen vs trainable: {diff} (scale {scale})");
    // Without its LoRA file the frozen model is refused, naming the file.
    std::fs::remove_file(dir.path().join("lora.safetensors")).unwrap();
    let err = Pipeline::open(
        dir.path(),
        braid_pipeline::Weights::Frozen { dequantize: false },
        &Device::Cpu,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("lora.safetensors"), "{err}");
}
