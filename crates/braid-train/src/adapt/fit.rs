//! Fitting an adapter: the hyper-parameter grids of the references searched on a
//! validation split, Tip-Adapter-F's fine-tuning of the cache keys, the linear probe.
//!
//! The grids: Tip-Adapter's `search_hp` (`configs/dtd.yaml`: β and α over [0.1, 13) in
//! 200 and 20 steps); SuS-X's `tipx.py` (α over [0.1, 50) in 20, β over [1, 50) in 200,
//! γ over [0.1, 30) in 50); CapS's `madapter.py` adds δ in {0, 0.1, .., 1} and, to keep the
//! search to seconds on 2 cores, Braid takes β and γ in 50 and 20 steps there. The first
//! best setting wins, as in the scripts. Tip-Adapter-F trains as `main.py` does (AdamW,
//! lr 1e-3, eps 1e-4, cosine over the epochs, batch 256), starting from the searched
//! Tip-Adapter (α, β), and keeps the epoch with the best *validation* accuracy (the
//! script picks it on the test set).

use braid_core::{Error, Result};
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::loss::cross_entropy;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;

use super::{accuracy, logits, Adapter, Method, Params};
use crate::optim::{AdamW, AdamWConfig, Grads};

/// Features with their labels.
#[derive(Debug, Clone)]
pub struct Labelled {
    /// Unit-length features [n, D].
    pub features: Tensor,
    /// Labels, one per row.
    pub labels: Vec<usize>,
}

impl Labelled {
    /// Rows `idx`.
    pub fn select(&self, idx: &[usize]) -> Result<Self> {
        let ids =
            Tensor::new(idx.iter().map(|&i| i as u32).collect::<Vec<_>>(), self.features.device())?;
        Ok(Self {
            features: self.features.index_select(&ids, 0)?,
            labels: idx.iter().map(|&i| self.labels[i]).collect(),
        })
    }
}

/// A support set: image keys with labels, and for CapS the caption features.
#[derive(Debug, Clone)]
pub struct Support {
    /// Image features and labels.
    pub images: Labelled,
    /// Caption features [N, D], row for row.
    pub captions: Option<Tensor>,
}

/// One search grid.
#[derive(Debug, Clone, PartialEq)]
pub struct Grid {
    /// Cache weights.
    pub alpha: Vec<f64>,
    /// Affinity sharpness.
    pub beta: Vec<f64>,
    /// KL weights (`[0]` without the KL term).
    pub gamma: Vec<f64>,
    /// Caption shares (`[0]` without captions).
    pub delta: Vec<f64>,
}

/// `i * (scale - start) / steps + start` for `i < steps`, the references' ranges.
fn range(start: f64, scale: f64, steps: usize) -> Vec<f64> {
    (0..steps).map(|i| i as f64 * (scale - start) / steps as f64 + start).collect()
}

impl Grid {
    /// The grid of `method` (see the module docs).
    pub fn of(method: Method) -> Self {
        match method {
            Method::Tip | Method::TipF => Self {
                alpha: range(0.1, 13.0, 20),
                beta: range(0.1, 13.0, 200),
                gamma: vec![0.0],
                delta: vec![0.0],
            },
            Method::TipX | Method::SusX => Self {
                alpha: range(0.1, 50.0, 20),
                beta: range(1.0, 50.0, 200),
                gamma: range(0.1, 30.0, 50),
                delta: vec![0.0],
            },
            Method::Caps => Self {
                alpha: range(0.1, 50.0, 20),
                beta: range(1.0, 50.0, 50),
                gamma: range(0.1, 30.0, 20),
                delta: (0..=10).map(|i| f64::from(i) / 10.0).collect(),
            },
            Method::ZeroShot | Method::LinearProbe => {
                Self { alpha: vec![0.0], beta: vec![0.0], gamma: vec![0.0], delta: vec![0.0] }
            }
        }
    }
}

/// What an adapter is fitted from.
#[derive(Debug, Clone)]
pub struct FitInputs<'a> {
    /// Class names, in label order.
    pub classes: &'a [String],
    /// Class text weights [C, D].
    pub text: &'a Tensor,
    /// Zero-shot scale.
    pub scale: f64,
    /// The support: the k shots (Tip-Adapter, TIP-X, linear probe), generated images
    /// (SuS-X) or images regenerated from the shots' captions (CapS).
    pub support: Option<&'a Support>,
    /// The validation split the hyper-parameters are chosen on.
    pub val: &'a Labelled,
    /// Seed of Tip-Adapter-F's batch order.
    pub seed: u64,
    /// Tip-Adapter-F's epochs over the shots (the reference configs: 20 for ImageNet and
    /// DTD, 100 for EuroSAT, whose zero-shot classifier is weak).
    pub tip_f_epochs: usize,
}

/// Tip-Adapter-F's default epochs (`configs/imagenet.yaml`).
pub const TIP_F_EPOCHS: usize = 20;

/// Fits `method`. -> (adapter, validation accuracy)
pub fn fit(method: Method, inp: &FitInputs) -> Result<(Adapter, f64)> {
    let c = inp.classes.len();
    if inp.text.dims() != [c, inp.text.dim(1)?] {
        return Err(Error::shape("text weights [classes, D]", &[c, 0], inp.text.dims()));
    }
    if inp.val.labels.is_empty() {
        return Err(Error::config("val", "the validation split is empty".to_string()));
    }
    let zero = Adapter {
        method,
        classes: inp.classes.to_vec(),
        text: inp.text.clone(),
        keys: None,
        values: None,
        captions: None,
        probe: None,
        params: Params::zero_shot(inp.scale),
    };
    if method == Method::ZeroShot {
        let acc = accuracy(&zero.predict(&inp.val.features)?, &inp.val.labels);
        return Ok((zero, acc));
    }
    let support = inp.support.ok_or_else(|| {
        Error::config("support", format!("the {} adapter needs a support set", method.name()))
    })?;
    check_support(support, c, inp.text.dim(1)?)?;
    if method == Method::Caps && support.captions.is_none() {
        return Err(Error::config("support", "CapS-Adapter needs caption features".to_string()));
    }
    if method == Method::LinearProbe {
        return linear_probe(zero, &support.images, inp.val);
    }
    let values = one_hot(&support.images.labels, c, support.images.features.device())?;
    let mut adapter = Adapter {
        keys: Some(support.images.features.clone()),
        values: Some(values),
        captions: if method == Method::Caps { support.captions.clone() } else { None },
        ..zero
    };
    if method == Method::TipF {
        let (start, _) = search(&adapter, &Grid::of(Method::Tip), inp.val)?;
        adapter.params = start;
        adapter.keys =
            Some(fine_tune(&adapter, &support.images, inp.val, inp.seed, inp.tip_f_epochs)?);
    }
    let (params, acc) = search(&adapter, &Grid::of(method), inp.val)?;
    adapter.params = params;
    Ok((adapter, acc))
}

fn check_support(s: &Support, classes: usize, dim: usize) -> Result<()> {
    let f = &s.images.features;
    if f.rank() != 2 || f.dim(1)? != dim || f.dim(0)? != s.images.labels.len() || f.dim(0)? == 0 {
        return Err(Error::shape(
            "support features [N>0, D] with N labels",
            &[s.images.labels.len(), dim],
            f.dims(),
        ));
    }
    if let Some(&l) = s.images.labels.iter().find(|&&l| l >= classes) {
        return Err(Error::config("support", format!("label {l} but only {classes} classes")));
    }
    if let Some(cap) = &s.captions {
        if cap.dims() != f.dims() {
            return Err(Error::shape(
                "caption features, one per support image",
                f.dims(),
                cap.dims(),
            ));
        }
    }
    Ok(())
}

/// labels -> [n, classes] one-hot f32
pub fn one_hot(labels: &[usize], classes: usize, dev: &Device) -> Result<Tensor> {
    let mut v = vec![0f32; labels.len() * classes];
    for (i, &l) in labels.iter().enumerate() {
        v[i * classes + l] = 1.0;
    }
    Ok(Tensor::from_vec(v, (labels.len(), classes), dev)?)
}

/// The grid search on the validation split. -> (best parameters, their accuracy)
fn search(a: &Adapter, grid: &Grid, val: &Labelled) -> Result<(Params, f64)> {
    let (keys, values) = (a.keys.as_ref(), a.values.as_ref());
    let (Some(keys), Some(values)) = (keys, values) else {
        return Err(Error::Invalid("search without a cache".into()));
    };
    let f = &val.features;
    let (n, c) = (val.labels.len(), a.classes.len());
    let p0 = a.params;
    let zs = flat(&logits::zero_shot(f, &a.text, p0.scale)?)?;
    let kl = if a.method.has_kl() {
        let pf = logits::class_distribution(f, &a.text, p0.temperature)?;
        let pk = logits::class_distribution(keys, &a.text, p0.temperature)?;
        Some(logits::kl_divergence(&pf, &pk)?)
    } else {
        None
    };
    let mut best = (p0, -1.0);
    let mut total = vec![0f32; n * c];
    for &delta in &grid.delta {
        let aff = logits::affinity(f, keys, a.captions.as_ref(), delta)?;
        let klog = match &kl {
            Some(k) => Some(flat(&logits::kl_logits(k, &aff, values)?)?),
            None => None,
        };
        for &beta in &grid.beta {
            let cache = flat(&logits::cache_logits(&aff, values, beta)?)?;
            for &alpha in &grid.alpha {
                for &gamma in &grid.gamma {
                    for i in 0..n * c {
                        let kl_term = klog.as_ref().map_or(0.0, |k| k[i] * gamma as f32);
                        total[i] = zs[i] + alpha as f32 * cache[i] + kl_term;
                    }
                    let correct = (0..n)
                        .filter(|&i| argmax(&total[i * c..(i + 1) * c]) == val.labels[i])
                        .count();
                    let acc = correct as f64 / n as f64;
                    if acc > best.1 {
                        best = (Params { alpha, beta, gamma, delta, ..p0 }, acc);
                    }
                }
            }
        }
    }
    Ok(best)
}

fn flat(t: &Tensor) -> Result<Vec<f32>> {
    Ok(t.flatten_all()?.to_vec1::<f32>()?)
}

fn argmax(row: &[f32]) -> usize {
    row.iter().enumerate().fold(0, |b, (i, &v)| if v > row[b] { i } else { b })
}

/// Tip-Adapter-F batch, learning rate and AdamW eps (`main.py`, `configs/*.yaml`).
const TIP_F_BATCH: usize = 256;
const TIP_F_LR: f64 = 1e-3;
const TIP_F_EPS: f64 = 1e-4;

/// Fine-tunes the cache keys by cross-entropy of the Tip-Adapter logits on the shots; the
/// keys of the epoch with the best validation accuracy.
fn fine_tune(
    a: &Adapter,
    shots: &Labelled,
    val: &Labelled,
    seed: u64,
    epochs: usize,
) -> Result<Tensor> {
    let (Some(keys0), Some(values)) = (&a.keys, &a.values) else {
        return Err(Error::Invalid("Tip-Adapter-F without a cache".into()));
    };
    let p = a.params;
    let keys = Var::from_tensor(&keys0.copy()?)?;
    let cfg = AdamWConfig { lr: TIP_F_LR, eps: TIP_F_EPS, ..AdamWConfig::default() };
    let mut opt = AdamW::from_vars([("keys".to_string(), keys.clone())], cfg);
    let n = shots.labels.len();
    let per_epoch = n.div_ceil(TIP_F_BATCH);
    let total = (epochs * per_epoch) as f64;
    let mut rng = StdRng::seed_from_u64(seed);
    let mut order: Vec<usize> = (0..n).collect();
    let eval = |k: &Tensor| -> Result<f64> {
        let probe = Adapter { keys: Some(k.clone()), ..a.clone() };
        Ok(accuracy(&probe.predict(&val.features)?, &val.labels))
    };
    let mut best = (keys0.clone(), eval(keys0)?);
    let mut step = 0usize;
    for _ in 0..epochs {
        order.shuffle(&mut rng);
        for chunk in order.chunks(TIP_F_BATCH) {
            let b = shots.select(chunk)?;
            let target = Tensor::new(
                b.labels.iter().map(|&l| l as u32).collect::<Vec<_>>(),
                b.features.device(),
            )?;
            let aff = b.features.matmul(&keys.as_tensor().t()?)?;
            let tip = (logits::zero_shot(&b.features, &a.text, p.scale)?
                + (logits::cache_logits(&aff, values, p.beta)? * p.alpha)?)?;
            let loss = cross_entropy(&tip, &target)?;
            let grads = Grads::from_vars([("keys", &keys)], &loss.backward()?);
            // PyTorch's CosineAnnealingLR steps after each update.
            opt.set_lr(TIP_F_LR * 0.5 * (1.0 + (std::f64::consts::PI * step as f64 / total).cos()));
            opt.step(&grads)?;
            step += 1;
        }
        let acc = eval(keys.as_tensor())?;
        if acc > best.1 {
            best = (keys.as_tensor().copy()?, acc);
        }
    }
    Ok(best.0)
}

/// L2 penalties tried by the linear probe (chosen on validation, as CLIP's sweep of C).
const PROBE_L2: [f64; 4] = [0.0, 1e-4, 1e-3, 1e-2];
const PROBE_STEPS: usize = 300;
const PROBE_LR: f64 = 0.05;

/// Multinomial logistic regression on the shots, full batch, its penalty chosen on
/// validation.
fn linear_probe(base: Adapter, shots: &Labelled, val: &Labelled) -> Result<(Adapter, f64)> {
    let (c, d) = (base.classes.len(), shots.features.dim(1)?);
    let dev = shots.features.device().clone();
    let target = Tensor::new(shots.labels.iter().map(|&l| l as u32).collect::<Vec<_>>(), &dev)?;
    let mut best: Option<(Adapter, f64)> = None;
    for l2 in PROBE_L2 {
        let w = Var::zeros((c, d), DType::F32, &dev)?;
        let b = Var::zeros(c, DType::F32, &dev)?;
        let cfg = AdamWConfig { lr: PROBE_LR, weight_decay: 0.0, ..AdamWConfig::default() };
        let mut opt =
            AdamW::from_vars([("w".to_string(), w.clone()), ("b".to_string(), b.clone())], cfg);
        for _ in 0..PROBE_STEPS {
            let z = shots.features.matmul(&w.as_tensor().t()?)?.broadcast_add(b.as_tensor())?;
            let loss = (cross_entropy(&z, &target)? + (w.as_tensor().sqr()?.sum_all()? * l2)?)?;
            opt.step(&Grads::from_vars([("w", &w), ("b", &b)], &loss.backward()?))?;
        }
        let a =
            Adapter { probe: Some((w.as_tensor().copy()?, b.as_tensor().copy()?)), ..base.clone() };
        let acc = accuracy(&a.predict(&val.features)?, &val.labels);
        if best.as_ref().is_none_or(|(_, b)| acc > *b) {
            best = Some((a, acc));
        }
    }
    best.ok_or_else(|| Error::Invalid("no linear probe".into()))
}
