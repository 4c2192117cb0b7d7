//! The `fuse` stage end to end on a small synthetic two-input dataset whose class shows
//! in both inputs: it trains, the model directory opens with `Pipeline::open` and scores
//! the same, corruption and robustness work, a frozen-encoder run starts from another
//! model's encoders and leaves them unchanged, and bad recipes fail before training
//! naming the field.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use braid_core::Modality;
use braid_data::fusion::{FusionDataset, FusionInputMeta, FusionMeta, FusionSplit};
use braid_pipeline::{Pipeline, Weights};
use braid_train::recipe::{evaluate_fusion, Corruption, Launch, Recipe};
use candle_core::{Device, Tensor};

/// Class `k` adds `k` to channel 0 of `a` and to every value of `b`, over noise.
fn split(n: usize, seed: u64) -> FusionSplit {
    let dev = Device::Cpu;
    let labels: Vec<usize> = (0..n).map(|i| (i * 7 + seed as usize) % 3).collect();
    let shift = |scale: f32| {
        let v: Vec<f32> = labels.iter().map(|&k| k as f32 * scale).collect();
        Tensor::from_vec(v, (n, 1, 1), &dev).unwrap()
    };
    let a = Tensor::randn(0f32, 1.0, (n, 2, 12), &dev).unwrap();
    let mask = Tensor::from_vec(vec![1f32, 0.0], (1, 2, 1), &dev).unwrap();
    let a =
        (a + shift(1.5).broadcast_mul(&mask).unwrap().broadcast_as((n, 2, 12)).unwrap()).unwrap();
    let b = Tensor::randn(0f32, 1.0, (n, 4, 4), &dev).unwrap();
    let b = (b + shift(1.5).broadcast_as((n, 4, 4)).unwrap()).unwrap();
    FusionSplit { inputs: vec![a, b], labels, groups: None }
}

fn dataset(dir: &Path) {
    let meta = FusionMeta {
        classes: vec!["x".into(), "y".into(), "z".into()],
        inputs: vec![
            FusionInputMeta { name: "a".into(), modality: Modality::Imu, shape: vec![2, 12] },
            FusionInputMeta { name: "b".into(), modality: Modality::Image, shape: vec![4, 4] },
        ],
        about: "synthetic".into(),
    };
    FusionDataset { meta, train: split(240, 0), test: split(90, 1) }.write(dir).unwrap();
}

fn recipe_text(out: &Path, data: &Path, method: &str, extra_model: &str) -> String {
    format!(
        "stage = \"fuse\"\nout_dir = \"{}\"\nmodality_dropout = 0.2\n[data]\npath = \"{}\"\n\
         [model]\nhidden = 16\n{extra_model}\n[model.method]\n{method}\n\
         [model.encoders.a]\ntype = \"cnn\"\nchannels = 2\nwidths = [8]\nkernel_size = 3\nstride = 2\n\
         [model.encoders.b]\ntype = \"cnn\"\nchannels = 4\nwidths = [8]\nkernel_size = 3\nstride = 1\n\
         [train]\nepochs = 6\nbatch_size = 16\nlr = 5e-3\nlog_every = 5\neval_every = 30\ncheckpoint_every = 1000\n",
        out.display(),
        data.display()
    )
}

fn train(text: &str) -> serde_json::Value {
    let recipe = Recipe::parse(text, Path::new("r.toml")).unwrap();
    recipe.validate().unwrap();
    let launch =
        Launch { written: text.into(), resolved: recipe.to_toml().unwrap(), ..Default::default() };
    recipe.run(&launch).unwrap().report
}

fn err(text: &str) -> String {
    let recipe = match Recipe::parse(text, Path::new("r.toml")) {
        Ok(r) => r,
        Err(e) => return e.to_string(),
    };
    if let Err(e) = recipe.validate() {
        return e.to_string();
    }
    let launch = Launch { written: text.into(), ..Default::default() };
    recipe.run(&launch).unwrap_err().to_string()
}

#[test]
fn trains_saves_reopens_and_scores_with_corrupted_inputs() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    dataset(&data);
    let out = tmp.path().join("run");
    let line =
        train(&recipe_text(&out, &data, "type = \"lmf\"\nrank = 2", "impute = \"autoencoder\""));
    let acc = line["accuracy"].as_f64().unwrap();
    assert!(acc > 0.8, "{line}");
    assert_eq!(line["method"], "lmf+impute_autoencoder");

    let model_dir = out.join("model");
    let model =
        Pipeline::open(&model_dir, Weights::Frozen { dequantize: false }, &Device::Cpu).unwrap();
    assert_eq!(model.classes().unwrap(), ["x", "y", "z"]);
    let clean = evaluate_fusion(&data, &model_dir, None, &Corruption::default(), false).unwrap();
    assert_eq!(clean.metrics.accuracy, acc, "the reopened model scores the same");

    let report_dir = tmp.path().join("report");
    let dropped = Corruption { drop: vec!["b".into()], ..Default::default() };
    let r = evaluate_fusion(&data, &model_dir, Some(&report_dir), &dropped, true).unwrap();
    assert!(
        r.metrics.accuracy > 0.5,
        "input `a` alone still separates the classes: {}",
        r.metrics.accuracy
    );
    let points = r.robustness.unwrap();
    assert_eq!(points.len(), 2 * 7, "6 noise levels and missing, per input");
    let clean_point = points.iter().find(|p| p.input == "a" && p.noise == Some(0.0)).unwrap();
    assert_eq!(clean_point.accuracy, acc);
    let loud = points.iter().find(|p| p.input == "b" && p.noise == Some(4.0)).unwrap();
    assert!(loud.accuracy < acc, "noise of 4 std on `b` costs accuracy");
    for f in ["eval.json", "confusion.png", "robustness.png"] {
        assert!(report_dir.join(f).is_file(), "{f}");
    }
    let e = Corruption { noise: vec![("c".into(), 1.0)], ..Default::default() };
    let e = evaluate_fusion(&data, &model_dir, None, &e, false).unwrap_err().to_string();
    assert!(e.contains("no input `c`"), "{e}");
    assert!(Corruption::parse_noise("a=loud").unwrap_err().to_string().contains("INPUT=LEVEL"));

    // Transfer: a second model starts from these encoders, frozen; they stay as they were.
    let out2 = tmp.path().join("run2");
    let init = format!("init = [\"{}\"]\nfreeze_encoders = true", model_dir.display());
    train(&recipe_text(&out2, &data, "type = \"early\"", &init));
    let a =
        candle_core::safetensors::load(model_dir.join("fusion.safetensors"), &Device::Cpu).unwrap();
    let b = candle_core::safetensors::load(out2.join("model/fusion.safetensors"), &Device::Cpu)
        .unwrap();
    let name = "encoders.a.convs.0.weight";
    let diff = (&a[name] - &b[name])
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert_eq!(diff, 0.0, "frozen encoders changed");
}

#[test]
fn bad_fuse_recipes_fail_before_training_naming_the_field() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    dataset(&data);
    let out = tmp.path().join("run");
    let good = recipe_text(&out, &data, "type = \"early\"", "");
    let e = err(&good.replace("type = \"early\"", "type = \"magic\""));
    assert!(e.contains("magic") && e.contains("tfn"), "{e}");
    let e = err(&good.replace("[data]\n", "[data]\ninputs = [\"a\", \"gps\"]\n"));
    assert!(e.contains("data.inputs[1]") && e.contains("gps"), "{e}");
    let e = err(&good.replace("[model.encoders.b]", "[model.encoders.c]"));
    assert!(e.contains("model.encoders.b"), "{e}");
    let e = err(&good.replace("[data]\n", "[data]\ninputs = [\"a\"]\n"));
    assert!(e.contains("model.encoders.b") && e.contains("reads no input"), "{e}");
    let e = err(&good.replace("channels = 4", "channels = 5"));
    eprintln!("wrong channels: {e}");
    assert!(e.contains("encoders.b") || e.contains("[8, 4, 3]") || e.contains("channel"), "{e}");
    let e = err(&good.replace(&data.display().to_string(), "/nonexistent/fusion"));
    assert!(e.contains("data.path") && e.contains("fusion.json"), "{e}");
    let e = err(&good.replace("[model]\n", "[model]\nfreeze_encoders = true\n"));
    assert!(e.contains("model.init"), "{e}");
    let e = err(&good.replace("modality_dropout = 0.2", "modality_dropout = 1.5"));
    assert!(e.contains("modality_dropout"), "{e}");
    let e = err(&good.replace("[model]\n", "[model]\nfusion_depth = 3\n"));
    assert!(e.contains("fusion_depth"), "{e}");
}
