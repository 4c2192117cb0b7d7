//! Training-free adapters over an aligned image-text space: zero-shot classification from
//! class-name prompts (CLIP, Radford et al. 2021), Tip-Adapter and Tip-Adapter-F (Zhang
//! et al., arXiv 2207.09519, `gaopengcuhk/Tip-Adapter`), TIP-X and SuS-X (Udandarao et
//! al., arXiv 2211.16198, `vishaal27/SuS-X`) and CapS-Adapter (Wang et al., arXiv
//! 2405.16591, `WLuLi/CapS-Adapter`), with a linear probe as the trained baseline.
//!
//! Every method is `logits = s f W^T (+ α cache) (+ γ KL term)` over unit-length image
//! features `f`, class text weights `W` and a support cache (keys `F`, one-hot values
//! `L`, and for CapS caption keys); [`logits`] has the formulas, [`fit`] the
//! hyper-parameter searches on a validation split (as the references do) and the
//! fine-tuning of Tip-Adapter-F, [`cache`] the directory `braid adapt` writes and
//! `braid classify --cache` reads, [`towers`] the encoders, [`table`] the k-shot table.

pub mod cache;
pub mod fit;
pub mod logits;
pub mod table;
pub mod towers;

use braid_core::{Error, Result};
use candle_core::Tensor;
use serde::{Deserialize, Serialize};

pub use cache::{read_cache, write_cache, CacheFile, CACHE_FILE, CACHE_WEIGHTS};
pub use fit::{fit, FitInputs, Grid, Labelled, Support, TIP_F_EPOCHS};
pub use towers::{fingerprint, Towers};

/// An adapter method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// Class-name prompts only.
    ZeroShot,
    /// Logistic regression on the k-shot features (trained; the baseline of the papers).
    LinearProbe,
    /// Tip-Adapter: the k-shot cache, training-free.
    Tip,
    /// Tip-Adapter-F: the cache keys fine-tuned on the k shots.
    TipF,
    /// TIP-X: the k-shot cache plus the KL term between class distributions.
    TipX,
    /// SuS-X: TIP-X over a support set generated from class names (no target images).
    SusX,
    /// CapS-Adapter: TIP-X over images regenerated from captions of the k shots, the
    /// affinity mixing image and caption keys.
    Caps,
}

impl Method {
    /// Every method, in table order.
    pub const ALL: [Method; 7] = [
        Method::ZeroShot,
        Method::LinearProbe,
        Method::Tip,
        Method::TipF,
        Method::TipX,
        Method::SusX,
        Method::Caps,
    ];

    /// The name used on the command line and in files.
    pub fn name(self) -> &'static str {
        match self {
            Method::ZeroShot => "zero-shot",
            Method::LinearProbe => "linear-probe",
            Method::Tip => "tip",
            Method::TipF => "tip-f",
            Method::TipX => "tip-x",
            Method::SusX => "sus-x",
            Method::Caps => "caps",
        }
    }

    /// Parses [`Self::name`].
    pub fn parse(s: &str) -> Result<Self> {
        Self::ALL.into_iter().find(|m| m.name() == s).ok_or_else(|| {
            let known: Vec<_> = Self::ALL.iter().map(|m| m.name()).collect();
            Error::config("method", format!("unknown adapter `{s}`; known: {}", known.join(", ")))
        })
    }

    /// Whether the method's cache holds images of the target's training split.
    pub fn uses_shots(self) -> bool {
        matches!(
            self,
            Method::LinearProbe | Method::Tip | Method::TipF | Method::TipX | Method::Caps
        )
    }

    /// Whether the method has a support cache.
    pub fn has_cache(self) -> bool {
        !matches!(self, Method::ZeroShot | Method::LinearProbe)
    }

    /// Whether the method adds TIP-X's KL term.
    pub fn has_kl(self) -> bool {
        matches!(self, Method::TipX | Method::SusX | Method::Caps)
    }
}

/// The hyper-parameters of a fitted adapter.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Factor of the zero-shot cosine similarities (`exp(logit_scale)`; CLIP 100).
    pub scale: f64,
    /// Weight of the cache logits.
    pub alpha: f64,
    /// Sharpness of the cache affinities.
    pub beta: f64,
    /// Weight of TIP-X's KL logits.
    pub gamma: f64,
    /// CapS: share of the caption keys in the affinity.
    pub delta: f64,
    /// Temperature of the class distributions of the KL term.
    pub temperature: f64,
}

impl Params {
    /// Zero-shot only, at scale `scale` (SuS-X's temperature 0.5).
    pub fn zero_shot(scale: f64) -> Self {
        Self { scale, alpha: 0.0, beta: 0.0, gamma: 0.0, delta: 0.0, temperature: 0.5 }
    }
}

/// A fitted adapter: everything needed to classify unit-length image features.
#[derive(Debug, Clone)]
pub struct Adapter {
    /// The method.
    pub method: Method,
    /// Class names, in label order.
    pub classes: Vec<String>,
    /// Class text weights [C, D] (unit rows).
    pub text: Tensor,
    /// Cache keys [N, D] (fine-tuned for Tip-Adapter-F).
    pub keys: Option<Tensor>,
    /// Cache values [N, C], one-hot.
    pub values: Option<Tensor>,
    /// CapS caption keys [N, D].
    pub captions: Option<Tensor>,
    /// Linear probe weight [C, D] and bias [C].
    pub probe: Option<(Tensor, Tensor)>,
    /// Hyper-parameters.
    pub params: Params,
}

impl Adapter {
    /// Logits of unit-length features. f: [n, D] -> [n, C]
    pub fn logits(&self, f: &Tensor) -> Result<Tensor> {
        let p = &self.params;
        if let Some((w, b)) = &self.probe {
            return Ok(f.matmul(&w.t()?)?.broadcast_add(b)?);
        }
        let mut out = logits::zero_shot(f, &self.text, p.scale)?;
        if !self.method.has_cache() {
            return Ok(out);
        }
        let (keys, values) = self.cache()?;
        let aff = logits::affinity(f, keys, self.captions.as_ref(), p.delta)?;
        out = (out + (logits::cache_logits(&aff, values, p.beta)? * p.alpha)?)?;
        if self.method.has_kl() && p.gamma != 0.0 {
            let pf = logits::class_distribution(f, &self.text, p.temperature)?;
            let pk = logits::class_distribution(keys, &self.text, p.temperature)?;
            let kl = logits::kl_divergence(&pf, &pk)?;
            out = (out + (logits::kl_logits(&kl, &aff, values)? * p.gamma)?)?;
        }
        Ok(out)
    }

    /// The cache keys and values.
    fn cache(&self) -> Result<(&Tensor, &Tensor)> {
        match (&self.keys, &self.values) {
            (Some(k), Some(v)) => Ok((k, v)),
            _ => Err(Error::Invalid(format!("the {} adapter has no cache", self.method.name()))),
        }
    }

    /// Predicted labels of unit-length features.
    pub fn predict(&self, f: &Tensor) -> Result<Vec<usize>> {
        Ok(self
            .logits(f)?
            .argmax(candle_core::D::Minus1)?
            .to_vec1::<u32>()?
            .into_iter()
            .map(|p| p as usize)
            .collect())
    }
}

/// Share of `predicted` equal to `labels`.
pub fn accuracy(predicted: &[usize], labels: &[usize]) -> f64 {
    if labels.is_empty() {
        return 0.0;
    }
    predicted.iter().zip(labels).filter(|(p, l)| p == l).count() as f64 / labels.len() as f64
}
