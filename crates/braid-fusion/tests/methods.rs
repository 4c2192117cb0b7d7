//! Every method: every trainable variable receives gradient from the training loss; a
//! missing input still gives logits of the right shape; wrong shapes and bad configs are
//! named.
#![allow(clippy::unwrap_used)]

use braid_fusion::{FusionClassifier, FusionConfig};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;

const METHODS: &[&str] = &[
    "type = \"early\"",
    "type = \"late\"",
    "type = \"late\"\nweights = \"learned\"",
    "type = \"weighted_sum\"",
    "type = \"attention\"",
    "type = \"tfn\"",
    "type = \"lmf\"\nrank = 3",
    "type = \"mult\"\nlayers = 2\nheads = 2",
    "type = \"autoencoder\"\nlatent = 8",
    "type = \"ensemble\"\ncombine = \"vote\"",
    "type = \"ensemble\"\ncombine = \"average\"",
    "type = \"ensemble\"\ncombine = \"stacking\"",
    "type = \"shared\"\nobjective = \"contrastive\"",
    "type = \"shared\"\nobjective = \"adversarial\"",
];

fn config(method: &str, extra: &str) -> FusionConfig {
    let text = format!(
        "hidden = 8\nclasses = [\"a\", \"b\", \"c\"]\n{extra}\n[method]\n{method}\n\
         [[inputs]]\nname = \"acc\"\nmodality = \"imu\"\nshape = [3, 16]\nmean = [0.1, 0.2, 0.3]\nstd = [1.0, 2.0, 0.5]\n\
         [inputs.encoder]\ntype = \"cnn\"\nchannels = 3\nwidths = [6, 8]\nkernel_size = 3\nstride = 2\n\
         [[inputs]]\nname = \"image\"\nmodality = \"image\"\nshape = [5, 5]\n\
         [inputs.encoder]\ntype = \"cnn\"\nchannels = 5\nwidths = [4]\nkernel_size = 3\nstride = 1\n"
    );
    toml::from_str(&text).unwrap()
}

fn batch(dev: &Device) -> (Vec<Option<Tensor>>, Tensor) {
    let acc = Tensor::randn(0f32, 1.0, (6, 3, 16), dev).unwrap();
    let img = Tensor::randn(0f32, 1.0, (6, 5, 5), dev).unwrap();
    (vec![Some(acc), Some(img)], Tensor::new(&[0u32, 1, 2, 0, 1, 2], dev).unwrap())
}

fn build(cfg: &FusionConfig) -> (VarMap, FusionClassifier) {
    let dev = Device::Cpu;
    let vars = VarMap::new();
    let vb = braid_nn::init::seeded_var_builder(&vars, 7, DType::F32, &dev);
    let model = FusionClassifier::new(cfg, vb, &dev).unwrap();
    (vars, model)
}

#[test]
fn every_variable_of_every_method_gets_gradient() {
    let dev = Device::Cpu;
    let (x, y) = batch(&dev);
    for method in METHODS {
        for impute in ["", "impute = \"autoencoder\"", "impute = \"adversarial\""] {
            if !impute.is_empty() && method.contains("mult") {
                continue;
            }
            let (vars, model) = build(&config(method, impute));
            let loss = model.loss(&x, &y).unwrap();
            assert!(loss.to_scalar::<f32>().unwrap().is_finite(), "{method}");
            let checked = braid_nn::gradcheck::check_all_vars_get_grad(&vars, &loss);
            assert!(checked.is_ok(), "{method} {impute}: {checked:?}");
        }
    }
}

#[test]
fn a_missing_input_still_gives_logits() {
    let dev = Device::Cpu;
    let (x, y) = batch(&dev);
    for method in METHODS {
        let (_, model) = build(&config(method, ""));
        for drop in 0..2 {
            let mut xs = x.clone();
            xs[drop] = None;
            let logits = model.forward(&xs).unwrap();
            assert_eq!(logits.dims(), &[6, 3], "{method} without input {drop}");
            // The loss of a batch with a dropped input is finite too (modality dropout).
            assert!(model.loss(&xs, &y).unwrap().to_scalar::<f32>().unwrap().is_finite());
        }
    }
}

#[test]
fn imputation_fills_the_missing_features() {
    let dev = Device::Cpu;
    let (x, _) = batch(&dev);
    let (_, plain) = build(&config("type = \"early\"", ""));
    let (_, imputed) = build(&config("type = \"early\"", "impute = \"autoencoder\""));
    let xs = vec![x[0].clone(), None];
    // Same seed, same encoders and head: only the imputed features differ from zeros.
    let a = plain.forward(&xs).unwrap();
    let b = imputed.forward(&xs).unwrap();
    let diff = (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    assert!(diff > 1e-6, "imputation changed nothing");
}

#[test]
fn wrong_shapes_and_bad_configs_are_named() {
    let dev = Device::Cpu;
    let (_, model) = build(&config("type = \"early\"", ""));
    let bad = vec![Some(Tensor::zeros((2, 4, 16), DType::F32, &dev).unwrap()), None];
    let e = model.forward(&bad).unwrap_err().to_string();
    assert!(e.contains("acc") && e.contains("[2, 3, 16]") && e.contains("[2, 4, 16]"), "{e}");
    let e = model.forward(&[None]).unwrap_err().to_string();
    assert!(e.contains("2 inputs"), "{e}");
    let e = model.forward(&[None, None]).unwrap_err().to_string();
    assert!(e.contains("missing"), "{e}");

    let text = "classes = [\"a\", \"b\"]\ninputs = []\n[method]\ntype = \"fusion_by_magic\"\n";
    let e = toml::from_str::<FusionConfig>(text).unwrap_err().to_string();
    assert!(e.contains("fusion_by_magic") && e.contains("lmf"), "{e}");
    let mut cfg = config("type = \"mult\"\nheads = 3", "");
    let e = cfg.validate("fusion").unwrap_err().to_string();
    assert!(e.contains("fusion.method.heads"), "{e}");
    cfg = config("type = \"early\"", "");
    cfg.inputs[0].std = vec![1.0, 0.0, 1.0];
    assert!(cfg.validate("fusion").unwrap_err().to_string().contains("inputs[0].std"));
    cfg.inputs[0].std = vec![1.0];
    assert!(cfg.validate("fusion").unwrap_err().to_string().contains("1 values for 3"));
    cfg = config("type = \"early\"", "");
    cfg.inputs[1].name = "acc".into();
    assert!(cfg.validate("fusion").unwrap_err().to_string().contains("twice"));
}
