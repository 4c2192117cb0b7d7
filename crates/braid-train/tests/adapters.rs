//! The training-free adapters: logits against a PyTorch re-implementation of the
//! reference scripts (`scripts/fixtures/adapters.py`, `fixtures/adapt/adapters.safetensors`)
//! within 1e-5, Tip-Adapter-F's key gradient, fitting on separable features, the cache
//! directory round trip, and the errors for bad input.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use braid_core::testing::assert_close;
use braid_train::adapt::fit::one_hot;
use braid_train::adapt::table::sample_shots;
use braid_train::adapt::{
    fit, logits, read_cache, write_cache, Adapter, CacheFile, FitInputs, Labelled, Method, Params,
    Support, CACHE_FILE, CACHE_WEIGHTS,
};
use braid_train::stages::l2_normalize as unit;
use candle_core::{Device, Tensor, Var};

const ALPHA: f64 = 1.7;
const BETA: f64 = 5.5;
const GAMMA: f64 = 0.8;
const DELTA: f64 = 0.3;
const TEMP: f64 = 0.5;
const SCALE: f64 = 100.0;

fn fixture() -> std::collections::HashMap<String, Tensor> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/adapt/adapters.safetensors");
    candle_core::safetensors::load(path, &Device::Cpu).expect("fixture")
}

fn adapter(t: &std::collections::HashMap<String, Tensor>, method: Method, delta: f64) -> Adapter {
    Adapter {
        method,
        classes: (0..4).map(|i| format!("c{i}")).collect(),
        text: t["text"].clone(),
        keys: Some(t["keys"].clone()),
        values: Some(t["values"].clone()),
        captions: (method == Method::Caps).then(|| t["captions"].clone()),
        probe: None,
        params: Params {
            scale: SCALE,
            alpha: ALPHA,
            beta: BETA,
            gamma: GAMMA,
            delta,
            temperature: TEMP,
        },
    }
}

#[test]
fn adapter_logits_match_the_reference_scripts() {
    let t = fixture();
    let f = &t["f"];
    let zs = logits::zero_shot(f, &t["text"], SCALE).unwrap();
    assert_close(&zs, &t["zero_shot"], 1e-5, "zero-shot").unwrap();
    assert_close(&adapter(&t, Method::Tip, 0.0).logits(f).unwrap(), &t["tip"], 1e-5, "tip")
        .unwrap();
    let p = logits::class_distribution(f, &t["text"], TEMP).unwrap();
    let q = logits::class_distribution(&t["keys"], &t["text"], TEMP).unwrap();
    assert_close(&logits::kl_divergence(&p, &q).unwrap(), &t["kl"], 1e-5, "kl").unwrap();
    assert_close(&adapter(&t, Method::TipX, 0.0).logits(f).unwrap(), &t["tipx"], 1e-5, "tip-x")
        .unwrap();
    assert_close(&adapter(&t, Method::Caps, DELTA).logits(f).unwrap(), &t["caps"], 1e-5, "caps")
        .unwrap();
}

#[test]
fn tip_adapter_f_key_gradient_matches_pytorch() {
    let t = fixture();
    let keys = Var::from_tensor(&t["keys"]).unwrap();
    let f = &t["f"];
    let target = t["target"].to_dtype(candle_core::DType::U32).unwrap();
    let aff = f.matmul(&keys.as_tensor().t().unwrap()).unwrap();
    let tip = (logits::zero_shot(f, &t["text"], SCALE).unwrap()
        + (logits::cache_logits(&aff, &t["values"], BETA).unwrap() * ALPHA).unwrap())
    .unwrap();
    let loss = candle_nn::loss::cross_entropy(&tip, &target).unwrap();
    assert_close(&loss.reshape(1).unwrap(), &t["tipf_loss"], 1e-5, "loss").unwrap();
    let grads = loss.backward().unwrap();
    let g = grads.get(keys.as_tensor()).expect("the cache keys get a gradient");
    assert_close(g, &t["tipf_grad"], 1e-5, "d loss / d keys").unwrap();
}

/// Four well-separated clusters whose class text weights point at the wrong cluster for
/// two classes: zero-shot gets half right, a cache of the shots fixes it.
fn clusters(per_class: usize, seed: u64) -> (Tensor, Labelled) {
    use rand::{Rng, SeedableRng};
    let dev = Device::Cpu;
    let mut centre_rng = rand::rngs::StdRng::seed_from_u64(7);
    let centres: Vec<f32> = (0..4 * 16).map(|_| centre_rng.gen_range(-1.0..1.0)).collect();
    let centres = unit(&Tensor::from_vec(centres, (4, 16), &dev).unwrap()).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut rows = Vec::new();
    let mut labels = Vec::new();
    for c in 0..4 {
        let noise: Vec<f32> = (0..per_class * 16).map(|_| rng.gen_range(-0.1..0.1)).collect();
        let noise = Tensor::from_vec(noise, (per_class, 16), &dev).unwrap();
        rows.push(noise.broadcast_add(&centres.narrow(0, c, 1).unwrap()).unwrap());
        labels.extend(std::iter::repeat_n(c, per_class));
    }
    let f = unit(&Tensor::cat(&rows, 0).unwrap()).unwrap();
    // Classes 2 and 3 swapped in the text weights.
    let order = Tensor::new(&[0u32, 1, 3, 2], &dev).unwrap();
    (centres.index_select(&order, 0).unwrap(), Labelled { features: f, labels })
}

#[test]
fn fitted_adapters_beat_zero_shot_and_round_trip_through_a_cache_directory() {
    let (text, pool) = clusters(20, 0);
    let (_, val) = clusters(10, 1);
    let classes: Vec<String> = ["a", "b", "c", "d"].map(String::from).to_vec();
    let shots = pool.select(&sample_shots(&pool.labels, 4, 4, 0).unwrap()).unwrap();
    let support = Support { images: shots, captions: None };
    let inp = FitInputs {
        classes: &classes,
        text: &text,
        scale: 20.0,
        support: Some(&support),
        val: &val,
        seed: 0,
        tip_f_epochs: 20,
    };
    let (_, zs) = fit(Method::ZeroShot, &inp).unwrap();
    assert!((0.4..0.6).contains(&zs), "zero-shot should get two classes of four: {zs}");
    let dir = tempfile::tempdir().unwrap();
    for m in [Method::LinearProbe, Method::Tip, Method::TipF, Method::TipX] {
        let (a, acc) = fit(m, &inp).unwrap();
        assert!(acc > 0.95, "{}: {acc}", m.name());
        let file = CacheFile {
            method: m,
            model: "towers".into(),
            model_fingerprint: "x".into(),
            dim: 16,
            classes: classes.clone(),
            templates: vec!["{}".into()],
            shots: 4,
            params: a.params,
            val_accuracy: acc,
            data: None,
        };
        let sub = dir.path().join(m.name());
        write_cache(&sub, &file, &a).unwrap();
        let (back_file, back) = read_cache(&sub, &Device::Cpu).unwrap();
        assert_eq!(back_file, file);
        assert_close(
            &back.logits(&val.features).unwrap(),
            &a.logits(&val.features).unwrap(),
            0.0,
            m.name(),
        )
        .unwrap();
    }
}

#[test]
fn bad_adapter_input_is_refused_with_a_clear_error() {
    let (text, pool) = clusters(3, 0);
    // k larger than a class has.
    let e = sample_shots(&pool.labels, 4, 8, 0).unwrap_err().to_string();
    assert!(e.contains("8 shots") && e.contains("only 3"), "{e}");
    // Support features of another width than the text weights.
    let classes: Vec<String> = ["a", "b", "c", "d"].map(String::from).to_vec();
    let wide = Support {
        images: Labelled {
            features: Tensor::ones((4, 32), candle_core::DType::F32, &Device::Cpu).unwrap(),
            labels: vec![0, 1, 2, 3],
        },
        captions: None,
    };
    let inp = FitInputs {
        classes: &classes,
        text: &text,
        scale: 20.0,
        support: Some(&wide),
        val: &pool,
        seed: 0,
        tip_f_epochs: 20,
    };
    let e = fit(Method::Tip, &inp).unwrap_err().to_string();
    assert!(e.contains("32") && e.contains("16"), "{e}");
    // A cache whose tensors disagree with its adapter.toml.
    let support = Support { images: pool.clone(), captions: None };
    let inp = FitInputs { support: Some(&support), ..inp };
    let (a, acc) = fit(Method::Tip, &inp).unwrap();
    let file = CacheFile {
        method: Method::Tip,
        model: "m".into(),
        model_fingerprint: "x".into(),
        dim: 16,
        classes: classes.clone(),
        templates: vec!["{}".into()],
        shots: 3,
        params: a.params,
        val_accuracy: acc,
        data: None,
    };
    let dir = tempfile::tempdir().unwrap();
    write_cache(dir.path(), &CacheFile { dim: 24, ..file.clone() }, &a).unwrap();
    let e = read_cache(dir.path(), &Device::Cpu).unwrap_err().to_string();
    assert!(e.contains(CACHE_WEIGHTS) && e.contains("text") && e.contains("24"), "{e}");
    // Caps without captions.
    write_cache(dir.path(), &CacheFile { method: Method::Caps, ..file.clone() }, &a).unwrap();
    let e = read_cache(dir.path(), &Device::Cpu).unwrap_err().to_string();
    assert!(e.contains("captions"), "{e}");
    // An unknown field.
    write_cache(dir.path(), &file, &a).unwrap();
    let p = dir.path().join(CACHE_FILE);
    let text = std::fs::read_to_string(&p).unwrap();
    std::fs::write(&p, format!("colour = 3\n{text}")).unwrap();
    let e = read_cache(dir.path(), &Device::Cpu).unwrap_err().to_string();
    assert!(e.contains(CACHE_FILE) && e.contains("colour"), "{e}");
    // One-hot of labels is what the cache holds.
    let v = one_hot(&[1, 0], 2, &Device::Cpu).unwrap().to_vec2::<f32>().unwrap();
    assert_eq!(v, vec![vec![0.0, 1.0], vec![1.0, 0.0]]);
}
