//! Each stage trains exactly the variables it names and no others: after two optimiser
//! steps through [`fit`], every variable of the trained components has moved and every
//! other variable of the model is bit-identical.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};

use braid_core::Modality;
use braid_pipeline::Sample;
use braid_pipeline::{Input, Pipeline, PipelineConfig};
use braid_train::classify::{Augment, ClassifyTask, Examples};
use braid_train::stages::{stage_vars, ContrastiveTask, ConversationTask, INITIAL_LOGIT_SCALE};
use braid_train::{fit, Component, RunOptions, Stage, Task, TrainConfig};
use candle_core::{DType, Device, Module, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};

const PIPELINE: &str = r#"
llm = "tiny-llama"
[llm_config]
vocab_size = 64
hidden_size = 32
intermediate_size = 48
num_hidden_layers = 2
num_attention_heads = 4
num_key_value_heads = 2
max_position_embeddings = 128
[lora]
rank = 2
alpha = 4.0
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
type = "mlp"
"#;

type Snapshot = BTreeMap<String, Vec<f32>>;

fn snapshot(maps: &[(String, &VarMap)]) -> Snapshot {
    let mut out = BTreeMap::new();
    for (prefix, vm) in maps {
        for (name, var) in vm.data().lock().unwrap().iter() {
            out.insert(
                format!("{prefix}.{name}"),
                var.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            );
        }
    }
    out
}

/// Names that changed, and a check that they are exactly `want` (a prefix filter).
fn assert_changed(before: &Snapshot, after: &Snapshot, trains: impl Fn(&str) -> bool) {
    let changed: BTreeSet<&String> = before.keys().filter(|k| before[*k] != after[*k]).collect();
    let want: BTreeSet<&String> = before.keys().filter(|k| trains(k)).collect();
    assert!(!want.is_empty());
    assert_eq!(changed, want, "changed variables differ from the stage's");
}

fn two_steps(task: &dyn Task) {
    let dir = tempfile::tempdir().unwrap();
    let cfg =
        TrainConfig { max_steps: 2, batch_size: 2, lr: 1e-2, log_every: 1, ..Default::default() };
    fit(
        task,
        &cfg,
        &RunOptions {
            dir: dir.path().into(),
            resume: false,
            config_toml: String::new(),
            progress: false,
            dist: None,
        },
    )
    .unwrap();
}

fn sample(seed: u32) -> Sample {
    sample_with(seed, 61)
}

/// A sample whose IMU placeholder has the id `imu`.
fn sample_with(seed: u32, imu: u32) -> Sample {
    let data = Tensor::randn(0f32, 1., (1, 16, 6), &Device::Cpu).unwrap();
    // <bos> <imu> caption tokens...; the prompt and placeholder are masked.
    let ids = vec![1, imu, 5 + seed, 9, 12 + seed, 3];
    let labels = vec![-100, -100, i64::from(5 + seed), 9, i64::from(12 + seed), 3];
    Sample { ids, labels, inputs: vec![Input { modality: Modality::Imu, data, mask: None }] }
}

fn conversation_stage(stage: Stage, extra: &[Component], trains: impl Fn(&str) -> bool) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pipeline.toml");
    std::fs::write(&path, PIPELINE).unwrap();
    let pipeline =
        Pipeline::init(&PipelineConfig::load(&path).unwrap(), dir.path(), &Device::Cpu).unwrap();
    let samples: Vec<Sample> = (0..4).map(sample).collect();
    let task = ConversationTask {
        pipeline: &pipeline,
        stage,
        extra: extra.to_vec(),
        extra_maps: vec![],
        samples: Box::new(|i| Ok(samples[i].clone())),
        len: 4,
        evaluate: None,
    };
    let before = snapshot(&pipeline.var_maps());
    assert!(
        before.keys().any(|k| k.starts_with("lora."))
            && before.keys().any(|k| k.starts_with("llm."))
    );
    two_steps(&task);
    assert_changed(&before, &snapshot(&pipeline.var_maps()), trains);
}

/// [`PIPELINE`] on the tiny GLM of `fixtures/llm/glm_tiny` (a Hugging Face folder,
/// `GlmForCausalLM`) instead of a fresh LLaMA.
fn glm_pipeline() -> String {
    let glm = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/llm/glm_tiny")
        .canonicalize()
        .unwrap();
    // Its tokenizer has 320 tokens: the placeholder `<imu>` is added as the 321st.
    let tail = PIPELINE.split_once("[lora]").unwrap().1.replace("token_id = 61", "token_id = 320");
    format!("llm = {:?}\n[lora]{tail}", glm.display().to_string())
}

/// One `stage` of two steps on the GLM pipeline: exactly the variables `trains` names move.
fn glm_stage(stage: Stage, trains: impl Fn(&str) -> bool) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pipeline.toml");
    std::fs::write(&path, glm_pipeline()).unwrap();
    let pipeline =
        Pipeline::init(&PipelineConfig::load(&path).unwrap(), dir.path(), &Device::Cpu).unwrap();
    let samples: Vec<Sample> = (0..4).map(|i| sample_with(i, 320)).collect();
    let task = ConversationTask {
        pipeline: &pipeline,
        stage,
        extra: vec![],
        extra_maps: vec![],
        samples: Box::new(|i| Ok(samples[i].clone())),
        len: 4,
        evaluate: None,
    };
    let before = snapshot(&pipeline.var_maps());
    // The default LoRA targets reach GLM's stacked gate/up projection.
    assert!(before.contains_key("lora.model.layers.1.mlp.gate_up_proj.lora_A.weight"));
    two_steps(&task);
    assert_changed(&before, &snapshot(&pipeline.var_maps()), trains);
}

#[test]
fn a_glm_backbone_trains_an_align_step_in_a_pipeline() {
    glm_stage(Stage::Align, |k| k.starts_with("projector."));
}

#[test]
fn a_glm_backbone_trains_its_lora_in_an_instruct_step() {
    glm_stage(Stage::Instruct, |k| k.starts_with("projector.") || k.starts_with("lora."));
}

#[test]
fn align_trains_the_projector_only() {
    conversation_stage(Stage::Align, &[], |k| k.starts_with("projector."));
}

#[test]
fn instruct_trains_the_projector_and_lora_only() {
    conversation_stage(Stage::Instruct, &[], |k| {
        k.starts_with("projector.") || k.starts_with("lora.")
    });
}

#[test]
fn instruct_with_the_encoder_trains_it_too() {
    conversation_stage(Stage::Instruct, &[Component::Encoder], |k| {
        k.starts_with("projector.") || k.starts_with("lora.") || k.starts_with("encoder.")
    });
}

#[test]
fn a_stage_naming_a_missing_component_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pipeline.toml");
    std::fs::write(&path, PIPELINE.replace("[lora]\nrank = 2\nalpha = 4.0\n", "")).unwrap();
    let pipeline =
        Pipeline::init(&PipelineConfig::load(&path).unwrap(), dir.path(), &Device::Cpu).unwrap();
    let e = stage_vars(&pipeline, Stage::Instruct, &[], &[]).unwrap_err().to_string();
    assert!(e.contains("LlmLora"), "{e}");
}

const CLASSIFIER: &str = r#"
[[encoders]]
modality = "imu"
[encoders.encoder]
type = "cnn"
channels = 6
widths = [4, 8]
kernel_size = 3
stride = 2
[head]
classes = ["a", "b"]
"#;

fn classifier(freeze: bool) {
    let cfg: PipelineConfig = toml::from_str(CLASSIFIER).unwrap();
    let model = Pipeline::init_seeded(&cfg, std::path::Path::new("."), &Device::Cpu, 3).unwrap();
    let x = Tensor::randn(0f32, 1., (4, 16, 6), &Device::Cpu).unwrap();
    let train = Examples::new(x, vec![0, 1, 0, 1], "train").unwrap();
    let task = ClassifyTask {
        model: &model,
        modality: Modality::Imu,
        train_encoder: !freeze,
        train,
        eval: None,
        augment: Augment::default(),
        eval_batch: 4,
        frozen_suffix: None,
    };
    let before = snapshot(&model.var_maps());
    assert!(
        before.keys().any(|k| k.starts_with("encoder.imu."))
            && before.keys().any(|k| k.starts_with("head."))
    );
    two_steps(&task);
    assert_changed(&before, &snapshot(&model.var_maps()), |k| {
        k.starts_with("head.") || (!freeze && k.starts_with("encoder."))
    });
}

#[test]
fn classify_trains_encoder_and_head_and_a_probe_only_the_head() {
    classifier(false);
    classifier(true);
}

#[test]
fn contrastive_trains_its_towers_and_temperature_only() {
    let (left_vars, frozen_vars) = (VarMap::new(), VarMap::new());
    let dev = Device::Cpu;
    let left =
        candle_nn::linear(5, 4, VarBuilder::from_varmap(&left_vars, DType::F32, &dev).pp("left"))
            .unwrap();
    let right = candle_nn::linear(
        3,
        4,
        VarBuilder::from_varmap(&frozen_vars, DType::F32, &dev).pp("right"),
    )
    .unwrap();
    let (a, b) = (
        Tensor::randn(0f32, 1., (6, 5), &dev).unwrap(),
        Tensor::randn(0f32, 1., (6, 3), &dev).unwrap(),
    );
    let pick = |t: &Tensor, idx: &[usize]| {
        t.index_select(
            &Tensor::new(idx.iter().map(|&i| i as u32).collect::<Vec<_>>(), &dev).unwrap(),
            0,
        )
        .unwrap()
    };
    let scale = Var::new(INITIAL_LOGIT_SCALE as f32, &dev).unwrap();
    let vars: Vec<(String, Var)> =
        left_vars.data().lock().unwrap().iter().map(|(n, v)| (n.clone(), v.clone())).collect();
    let task = ContrastiveTask {
        left: Box::new(|idx| Ok(left.forward(&pick(&a, idx))?)),
        right: Box::new(|idx| Ok(right.forward(&pick(&b, idx))?)),
        logit_scale: scale.clone(),
        groups: Some(vec![0, 1, 2, 0, 1, 2]),
        len: 6,
        vars,
        evaluate: None,
    };
    let maps = [("left".to_string(), &left_vars), ("frozen".to_string(), &frozen_vars)];
    let before = snapshot(&maps);
    two_steps(&task);
    assert_changed(&before, &snapshot(&maps), |k| k.starts_with("left."));
    assert_ne!(
        scale.as_tensor().to_scalar::<f32>().unwrap(),
        INITIAL_LOGIT_SCALE as f32,
        "the temperature learns"
    );
}

/// A sample of `extra` more caption tokens than [`sample`]'s, so a batch has several lengths.
fn longer(seed: u32, extra: usize) -> Sample {
    let mut s = sample(seed);
    for k in 0..extra as u32 {
        s.ids.push(20 + k + seed);
        s.labels.push(i64::from(20 + k + seed));
    }
    s
}

#[test]
fn a_padded_batch_gives_the_loss_of_its_samples_run_one_by_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pipeline.toml");
    std::fs::write(&path, PIPELINE).unwrap();
    let pipeline =
        Pipeline::init(&PipelineConfig::load(&path).unwrap(), dir.path(), &Device::Cpu).unwrap();
    let samples = [longer(0, 0), longer(1, 5), longer(2, 2)];
    let task = ConversationTask {
        pipeline: &pipeline,
        stage: Stage::Instruct,
        extra: vec![],
        extra_maps: vec![],
        samples: Box::new(|i| Ok(samples[i].clone())),
        len: 3,
        evaluate: None,
    };
    let learnt = |s: &Sample| s.labels[1..].iter().filter(|&&l| l != -100).count() as f32;
    let scalar = |t: Tensor| t.to_scalar::<f32>().unwrap();
    let one_by_one: f32 =
        (0..3).map(|i| scalar(task.loss(&[i], 0).unwrap()) * learnt(&samples[i])).sum::<f32>()
            / samples.iter().map(learnt).sum::<f32>();
    let batched = scalar(task.loss(&[0, 1, 2], 0).unwrap());
    assert!(
        (batched - one_by_one).abs() < 1e-5 * one_by_one.abs().max(1.0),
        "{batched} vs {one_by_one}"
    );
}
