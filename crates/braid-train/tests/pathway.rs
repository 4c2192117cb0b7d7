//! Multimodal Pathway on the IMU patch transformer (issue 15): the auxiliary weights come
//! from another model's file by name, one of another width is refused by name, λ and
//! (when trained) W_aux get gradient while a frozen W_aux is left out, and the merged
//! model's logits equal the unmerged one's bit for bit.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use braid_core::Modality;
use braid_pipeline::{Input, Pipeline, PipelineConfig};
use braid_train::classify::{Augment, ClassifyTask, Examples};
use braid_train::recipe::pathway::{fill_aux, merge, PathwaySource, AUX_SUFFIX};
use braid_train::Task;
use candle_core::{Device, Tensor};

const MODEL: &str = r#"
[[encoders]]
modality = "imu"
[encoders.encoder]
type = "patch"
channels = 6
patch_size = 4
stride = 4
transformer = { hidden_size = 8, intermediate_size = 16, num_layers = 2, num_heads = 2, max_positions = 8, pathway = true }
[head]
classes = ["a", "b", "c"]
"#;

/// A file holding an "image transformer" of `width` (MLP 2 * width) with 3 layers, its
/// tensors named as the easy-VQA ViT's.
fn aux_file(dir: &Path, width: usize) -> PathBuf {
    let dev = Device::Cpu;
    let mut tensors = HashMap::new();
    for layer in 0..3 {
        for (name, shape) in [
            ("self_attn.q_proj", (width, width)),
            ("self_attn.k_proj", (width, width)),
            ("self_attn.v_proj", (width, width)),
            ("self_attn.out_proj", (width, width)),
            ("mlp.fc1", (2 * width, width)),
            ("mlp.fc2", (width, 2 * width)),
        ] {
            let t = Tensor::randn(0f32, 1., shape, &dev).unwrap();
            tensors.insert(format!("encoder.layers.{layer}.{name}.weight"), t);
        }
    }
    candle_core::safetensors::save(&tensors, dir.join("encoder.image.safetensors")).unwrap();
    dir.to_path_buf()
}

fn source(from: PathBuf, train_aux: bool) -> PathwaySource {
    PathwaySource {
        from,
        component: "encoder.image".into(),
        prefix: "encoder.layers".into(),
        layers: vec![2, 0],
        train_aux,
        merge: true,
    }
}

fn var(model: &Pipeline, name: &str) -> candle_core::Var {
    let maps = model.var_maps();
    let (_, vm) = maps.iter().find(|(n, _)| n == "encoder.imu").unwrap();
    let data = vm.data().lock().unwrap();
    data.get(name).unwrap_or_else(|| panic!("no {name}")).clone()
}

#[test]
fn pathway_weights_come_by_name_learn_and_merge_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let cfg: PipelineConfig = toml::from_str(MODEL).unwrap();
    let model = Pipeline::init_seeded(&cfg, Path::new("."), &Device::Cpu, 1).unwrap();
    let src = source(aux_file(dir.path(), 8), false);
    fill_aux(&model, "encoder.imu", &src).unwrap();
    // Our layer 0 takes the auxiliary layer 2, our layer 1 the auxiliary layer 0.
    let file =
        braid_core::checkpoint::Checkpoint::open(dir.path().join("encoder.image.safetensors"))
            .unwrap();
    let want = file
        .tensor("encoder.layers.2.mlp.fc1.weight", candle_core::DType::F32, &Device::Cpu)
        .unwrap();
    let got = var(&model, "transformer.layers.0.mlp.fc1.pathway.weight");
    assert_eq!(
        got.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        want.flatten_all().unwrap().to_vec1::<f32>().unwrap()
    );

    // λ starts at 0 (the plain transformer); the frozen W_aux is not trained, every λ is.
    let x = Tensor::randn(0f32, 1., (5, 16, 6), &Device::Cpu).unwrap();
    let task = ClassifyTask {
        model: &model,
        modality: Modality::Imu,
        train_encoder: true,
        train: Examples::new(x.clone(), vec![0, 1, 2, 0, 1], "train").unwrap(),
        eval: None,
        augment: Augment::default(),
        eval_batch: 5,
        frozen_suffix: Some(AUX_SUFFIX),
    };
    let vars = task.trainable().unwrap();
    assert!(!vars.iter().any(|(n, _)| n.ends_with(AUX_SUFFIX)));
    let scales: Vec<_> = vars.iter().filter(|(n, _)| n.ends_with(".pathway.scale")).collect();
    assert_eq!(scales.len(), 2 * 6, "one λ per attention and MLP linear of each layer");
    let grads = task.loss(&[0, 1, 2, 3, 4], 0).unwrap().backward().unwrap();
    for (name, v) in &vars {
        let g = grads.get(v.as_tensor()).unwrap_or_else(|| panic!("{name} got no gradient"));
        let norm = g.sqr().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(norm > 0.0, "{name} got a zero gradient");
    }

    // With λ and W_aux in play, the merged plain transformer gives the very same logits.
    for (k, (_, v)) in scales.iter().enumerate() {
        v.set(&Tensor::new(&[0.05f32 * (k as f32 + 1.0)], &Device::Cpu).unwrap()).unwrap();
    }
    let input = Input { modality: Modality::Imu, data: x, mask: None };
    let before = model.classify(&input).unwrap();
    let merged = merge(&model, &cfg).unwrap();
    let after = merged.classify(&input).unwrap();
    let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(flat(&before), flat(&after));
    // ... and is a plain transformer, saved and reopened with the same logits.
    let out = dir.path().join("merged");
    std::fs::create_dir_all(&out).unwrap();
    merged.save(&out).unwrap();
    let text = std::fs::read_to_string(out.join("pipeline.toml")).unwrap();
    assert!(!text.contains("pathway"), "{text}");
    let reopened =
        Pipeline::open(&out, braid_pipeline::Weights::Frozen { dequantize: false }, &Device::Cpu)
            .unwrap();
    assert_eq!(flat(&before), flat(&reopened.classify(&input).unwrap()));
    let plain = Pipeline::init_seeded(&cfg, Path::new("."), &Device::Cpu, 1).unwrap();
    assert_ne!(flat(&before), flat(&plain.classify(&input).unwrap()));
}

#[test]
fn trained_auxiliary_weights_learn_and_another_width_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let cfg: PipelineConfig = toml::from_str(MODEL).unwrap();
    let model = Pipeline::init_seeded(&cfg, Path::new("."), &Device::Cpu, 1).unwrap();
    fill_aux(&model, "encoder.imu", &source(aux_file(dir.path(), 8), true)).unwrap();
    let x = Tensor::randn(0f32, 1., (3, 16, 6), &Device::Cpu).unwrap();
    let task = ClassifyTask {
        model: &model,
        modality: Modality::Imu,
        train_encoder: true,
        train: Examples::new(x, vec![0, 1, 2], "train").unwrap(),
        eval: None,
        augment: Augment::default(),
        eval_batch: 3,
        frozen_suffix: None,
    };
    // Set λ away from 0 so that W_aux's gradient (λ times the weight's) is not zero.
    let vars = task.trainable().unwrap();
    for (n, v) in &vars {
        if n.ends_with(".pathway.scale") {
            v.set(&Tensor::new(&[0.1f32], &Device::Cpu).unwrap()).unwrap();
        }
    }
    let grads = task.loss(&[0, 1, 2], 0).unwrap().backward().unwrap();
    let aux: Vec<_> = vars.iter().filter(|(n, _)| n.ends_with(AUX_SUFFIX)).collect();
    assert_eq!(aux.len(), 12);
    for (name, v) in aux {
        assert!(grads.get(v.as_tensor()).is_some(), "{name} got no gradient");
    }

    let wide = tempfile::tempdir().unwrap();
    let e = fill_aux(&model, "encoder.imu", &source(aux_file(wide.path(), 16), false))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("another width")
            && e.contains("encoder.layers.2.mlp.fc1.weight")
            && e.contains("[32, 16]")
            && e.contains("[16, 8]"),
        "{e}"
    );
}
