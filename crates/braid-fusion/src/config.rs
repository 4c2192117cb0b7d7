//! `[fusion]` in `pipeline.toml` and in a `fuse` recipe's `[model]`: the inputs (each a
//! named stream with its modality, per-sample shape, encoder and standardisation), the
//! fusion method, the optional imputer of a missing input, and the class names.

use braid_core::{Error, Modality, Result};
use braid_encoders::EncoderConfig;
use serde::{Deserialize, Serialize};

/// One input stream of a fusion model (`acc`, `gyro`, `image`, `audio`, ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FusionInput {
    /// The name the data and the commands use (`--drop gyro`).
    pub name: String,
    /// What kind of signal it is.
    pub modality: Modality,
    /// Per-sample shape, channels first (`[3, 128]`: three axes over 128 steps).
    pub shape: Vec<usize>,
    /// Its encoder; the tokens are mean-pooled into one feature vector where a method
    /// needs one.
    pub encoder: EncoderConfig,
    /// Per-channel mean (dim 0 of a sample) subtracted before the encoder, from the
    /// training split.
    #[serde(default)]
    pub mean: Vec<f32>,
    /// Per-channel standard deviation divided by after the mean.
    #[serde(default)]
    pub std: Vec<f32>,
}

/// How late fusion weighs its unimodal logits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LateWeights {
    /// Plain average.
    #[default]
    Mean,
    /// Softmax of one learned scalar per input.
    Learned,
}

/// How an ensemble combines its members' predictions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Combine {
    /// Majority of the members' argmax (ties go to the larger summed probability).
    Vote,
    /// Mean of the members' probabilities.
    #[default]
    Average,
    /// A linear meta-classifier over the members' probabilities (trained on detached
    /// probabilities, so the members stay independent).
    Stacking,
}

/// The objective that ties a shared representation across inputs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SharedObjective {
    /// InfoNCE between every pair of inputs' projections (the same sample is the positive).
    #[default]
    Contrastive,
    /// A modality discriminator behind gradient reversal: the projections learn to hide
    /// which input they came from.
    Adversarial,
}

/// The fusion method (`[fusion.method] type = "lmf"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum FusionMethod {
    /// Concatenated pooled features into an MLP (MultiBench `Concat`).
    Early,
    /// One linear head per input; their logits averaged or weighted.
    Late {
        /// Mean or learned weights.
        #[serde(default)]
        weights: LateWeights,
    },
    /// Each input projected to `hidden`, summed with learned softmax weights.
    WeightedSum,
    /// Each input projected to `hidden`, summed with per-sample attention weights
    /// (`v^T tanh(W h)` softmaxed over the inputs): a gated fusion.
    Attention,
    /// Tensor fusion (Zadeh et al. 2017; MultiBench `TensorFusion`): the outer product of
    /// the features each extended by a leading 1, into an MLP.
    Tfn,
    /// Low-rank multimodal fusion (Liu et al. 2018; MultiBench `LowRankTensorFusion`).
    Lmf {
        /// Rank of the factorisation.
        #[serde(default = "default_rank")]
        rank: usize,
    },
    /// Cross-modal transformer (MulT, Tsai et al. 2019): each input's token sequence
    /// attends to the others' through pre-norm cross-attention blocks.
    Mult {
        /// Cross-modal blocks per target input.
        #[serde(default = "default_layers")]
        layers: usize,
        /// Attention heads.
        #[serde(default = "default_heads")]
        heads: usize,
    },
    /// A multimodal autoencoder: a joint latent from all inputs, decoders that rebuild
    /// each (standardised) input from it, the classifier on the latent.
    Autoencoder {
        /// Latent width.
        #[serde(default = "default_latent")]
        latent: usize,
        /// Weight of the reconstruction loss against the classification loss.
        #[serde(default = "default_one")]
        reconstruction: f64,
    },
    /// Unimodal members, each with its own head and loss, combined at prediction.
    Ensemble {
        /// Vote, average or stacking.
        #[serde(default)]
        combine: Combine,
    },
    /// Inputs projected into one shared space, tied by an objective; the classifier reads
    /// the mean of the projections (a missing input simply drops out of the mean).
    Shared {
        /// Contrastive or adversarial.
        #[serde(default)]
        objective: SharedObjective,
        /// Weight of that objective against the classification loss.
        #[serde(default = "default_one")]
        weight: f64,
    },
}

fn default_rank() -> usize {
    4
}
fn default_layers() -> usize {
    1
}
fn default_heads() -> usize {
    4
}
fn default_latent() -> usize {
    64
}
fn default_one() -> f64 {
    1.0
}

impl FusionMethod {
    /// The names of the methods, for errors and help.
    pub const KINDS: [&'static str; 10] = [
        "early",
        "late",
        "weighted_sum",
        "attention",
        "tfn",
        "lmf",
        "mult",
        "autoencoder",
        "ensemble",
        "shared",
    ];
}

/// How a missing input's features are filled in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImputeKind {
    /// An MLP from each present input's features to the missing one's, trained by MSE.
    Autoencoder,
    /// The same MLP also trained against a discriminator of real vs imputed features
    /// (behind gradient reversal).
    Adversarial,
}

/// The whole fusion classifier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FusionConfig {
    /// The method.
    pub method: FusionMethod,
    /// Width of projections, MLP hidden layers and the cross-modal model.
    #[serde(default = "default_hidden")]
    pub hidden: usize,
    /// Fill in a missing input's features from the others' (absent: zeros).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub impute: Option<ImputeKind>,
    /// Weight of the imputer's losses against the classification loss.
    #[serde(default = "default_one")]
    pub impute_weight: f64,
    /// The class names, in label order.
    pub classes: Vec<String>,
    /// The inputs, in the order the model reads them.
    pub inputs: Vec<FusionInput>,
}

fn default_hidden() -> usize {
    64
}

impl FusionConfig {
    /// The index of the input called `name`, or an error listing the inputs.
    pub fn input(&self, name: &str) -> Result<usize> {
        self.inputs.iter().position(|i| i.name == name).ok_or_else(|| {
            let have: Vec<&str> = self.inputs.iter().map(|i| i.name.as_str()).collect();
            Error::Invalid(format!(
                "this model has no input `{name}` (it has: {})",
                have.join(", ")
            ))
        })
    }

    /// Checks what serde cannot, naming the field (`prefix` is where the table sits).
    pub fn validate(&self, prefix: &str) -> Result<()> {
        let field = |f: &str| format!("{prefix}.{f}");
        if self.inputs.is_empty() {
            return Err(Error::config(field("inputs"), "a fusion model needs at least one input"));
        }
        if self.classes.len() < 2 {
            return Err(Error::config(field("classes"), "needs at least two classes"));
        }
        if self.hidden == 0 {
            return Err(Error::config(field("hidden"), "must be at least 1"));
        }
        for (i, input) in self.inputs.iter().enumerate() {
            let f = |x: &str| field(&format!("inputs[{i}].{x}"));
            if self.inputs[..i].iter().any(|o| o.name == input.name) {
                return Err(Error::config(f("name"), format!("`{}` appears twice", input.name)));
            }
            if input.shape.is_empty() || input.shape.contains(&0) {
                return Err(Error::config(
                    f("shape"),
                    format!("{:?} is not a sample shape", input.shape),
                ));
            }
            let c = input.shape[0];
            for (name, v) in [("mean", &input.mean), ("std", &input.std)] {
                if !v.is_empty() && v.len() != c {
                    return Err(Error::config(
                        f(name),
                        format!("has {} values for {c} channels", v.len()),
                    ));
                }
            }
            if input.std.iter().any(|s| !(*s > 0.0 && s.is_finite())) {
                return Err(Error::config(f("std"), "every value must be positive and finite"));
            }
        }
        let multi = self.inputs.len() >= 2;
        match &self.method {
            FusionMethod::Lmf { rank: 0 } => {
                return Err(Error::config(field("method.rank"), "must be at least 1"))
            }
            FusionMethod::Mult { layers, heads } => {
                if *layers == 0 {
                    return Err(Error::config(field("method.layers"), "must be at least 1"));
                }
                if *heads == 0 || self.hidden % heads != 0 {
                    return Err(Error::config(
                        field("method.heads"),
                        format!("{heads} heads do not divide hidden = {}", self.hidden),
                    ));
                }
                if !multi {
                    return Err(Error::config(field("method"), "MulT needs two inputs or more"));
                }
            }
            FusionMethod::Autoencoder { latent: 0, .. } => {
                return Err(Error::config(field("method.latent"), "must be at least 1"))
            }
            FusionMethod::Shared { .. } if !multi => {
                return Err(Error::config(
                    field("method"),
                    "a shared representation needs two inputs or more",
                ))
            }
            _ => {}
        }
        if self.impute.is_some() && !multi {
            return Err(Error::config(field("impute"), "imputation needs two inputs or more"));
        }
        if self.impute.is_some() && matches!(self.method, FusionMethod::Mult { .. }) {
            return Err(Error::config(
                field("impute"),
                "imputes pooled features; MulT reads token sequences",
            ));
        }
        Ok(())
    }
}
