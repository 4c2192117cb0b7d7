//! Fusion through a learned representation: a multimodal autoencoder with the classifier
//! on its joint latent (the deterministic core of MVAE / MFM, whose reconstruction term
//! rebuilds every input from the joint code), and a shared space across inputs tied by a
//! contrastive or adversarial objective (MultiBench `objective_functions/`: contrastive
//! alignment; the modality discriminator of adversarial representation learning).

use braid_core::{Features, Result};
use braid_nn::{cross_entropy, Linear};
use candle_core::{Module, Tensor};
use candle_nn::VarBuilder;

use crate::config::SharedObjective;
use crate::fusion::{pooled, pooled_or_zeros, sum_terms};
use crate::ops::{grad_reverse, info_nce, mse, per_input_linear, Mlp2};
use crate::FusionModel;

/// Temperature of the shared space's InfoNCE.
const TEMPERATURE: f64 = 0.1;

/// The autoencoder: latent `relu(W [z_1; ...; z_n])`, decoder `i` rebuilds input `i`
/// (flattened), the classifier reads the latent.
pub struct Autoencoder {
    dims: Vec<usize>,
    encode: Linear,
    decoders: Vec<Mlp2>,
    classifier: Mlp2,
    reconstruction: f64,
    classes: usize,
}

impl Autoencoder {
    /// dims: each input's feature width; sizes: each input's elements per sample.
    pub fn new(
        dims: &[usize],
        sizes: &[usize],
        classes: usize,
        hidden: usize,
        latent: usize,
        reconstruction: f64,
        vb: VarBuilder,
    ) -> Result<Self> {
        let decoders = sizes
            .iter()
            .enumerate()
            .map(|(i, &s)| Mlp2::new(latent, hidden, s, vb.pp(format!("decoders.{i}"))))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            dims: dims.to_vec(),
            encode: Linear::new(dims.iter().sum(), latent, true, vb.pp("encode"))?,
            decoders,
            classifier: Mlp2::new(latent, hidden, classes, vb.pp("classifier"))?,
            reconstruction,
            classes,
        })
    }

    fn latent(&self, inputs: &[Option<Features>]) -> Result<Tensor> {
        let parts = pooled_or_zeros(inputs, &self.dims)?;
        Ok(self.encode.forward(&Tensor::cat(&parts, 1)?)?.relu()?)
    }
}

impl FusionModel for Autoencoder {
    fn num_modalities(&self) -> usize {
        self.dims.len()
    }
    fn num_classes(&self) -> usize {
        self.classes
    }
    fn forward(&self, inputs: &[Option<Features>]) -> Result<Tensor> {
        self.classifier.forward(&self.latent(inputs)?)
    }
    /// Cross-entropy plus `reconstruction` times the mean over inputs of the MSE between
    /// each standardised input and its rebuild.
    fn loss(&self, inputs: &[Option<Features>], raw: &[Tensor], labels: &Tensor) -> Result<Tensor> {
        let latent = self.latent(inputs)?;
        let mut loss = cross_entropy(&self.classifier.forward(&latent)?, labels, None)?;
        let n = raw.len().max(1) as f64;
        for (dec, x) in self.decoders.iter().zip(raw) {
            let target = x.flatten_from(1)?;
            loss = (loss + (mse(&dec.forward(&latent)?, &target)? * (self.reconstruction / n))?)?;
        }
        Ok(loss)
    }
}

/// A shared space: input `i` projected by `proj.i`; the classifier reads the mean of the
/// present projections.
pub struct Shared {
    proj: Vec<Linear>,
    classifier: Mlp2,
    /// The modality discriminator (adversarial objective only).
    discriminator: Option<Mlp2>,
    weight: f64,
    classes: usize,
}

impl Shared {
    /// dims: each input's feature width.
    pub fn new(
        dims: &[usize],
        classes: usize,
        hidden: usize,
        objective: SharedObjective,
        weight: f64,
        vb: VarBuilder,
    ) -> Result<Self> {
        let proj = per_input_linear(dims, hidden, "proj", &vb)?;
        let discriminator = match objective {
            SharedObjective::Contrastive => None,
            SharedObjective::Adversarial => {
                Some(Mlp2::new(hidden, hidden, dims.len(), vb.pp("discriminator"))?)
            }
        };
        Ok(Self {
            proj,
            classifier: Mlp2::new(hidden, hidden, classes, vb.pp("classifier"))?,
            discriminator,
            weight,
            classes,
        })
    }

    fn projections(&self, inputs: &[Option<Features>]) -> Result<Vec<Option<Tensor>>> {
        pooled(inputs)?
            .iter()
            .zip(&self.proj)
            .map(|(z, p)| Ok(z.as_ref().map(|z| p.forward(z)).transpose()?))
            .collect()
    }

    fn classify(&self, h: &[Option<Tensor>]) -> Result<Tensor> {
        let present: Vec<&Tensor> = h.iter().flatten().collect();
        if present.is_empty() {
            return Err(braid_core::Error::Invalid("every input is missing".into()));
        }
        let mean = (Tensor::stack(&present, 0)?.sum(0)? / present.len() as f64)?;
        self.classifier.forward(&mean)
    }
}

impl FusionModel for Shared {
    fn num_modalities(&self) -> usize {
        self.proj.len()
    }
    fn num_classes(&self) -> usize {
        self.classes
    }
    fn forward(&self, inputs: &[Option<Features>]) -> Result<Tensor> {
        self.classify(&self.projections(inputs)?)
    }
    /// Cross-entropy plus `weight` times the objective: mean InfoNCE over input pairs, or
    /// the discriminator's cross-entropy at naming each projection's input behind
    /// gradient reversal.
    fn loss(
        &self,
        inputs: &[Option<Features>],
        _raw: &[Tensor],
        labels: &Tensor,
    ) -> Result<Tensor> {
        let h = self.projections(inputs)?;
        let ce = cross_entropy(&self.classify(&h)?, labels, None)?;
        let h: Vec<&Tensor> = h.iter().flatten().collect();
        let mut terms = Vec::new();
        match &self.discriminator {
            None => {
                for i in 0..h.len() {
                    for j in i + 1..h.len() {
                        terms.push(info_nce(h[i], h[j], TEMPERATURE)?);
                    }
                }
            }
            Some(d) => {
                for (i, h) in h.iter().enumerate() {
                    let logits = d.forward(&grad_reverse(h)?)?;
                    let who = Tensor::full(i as u32, logits.dim(0)?, logits.device())?;
                    terms.push(cross_entropy(&logits, &who, None)?);
                }
            }
        }
        if terms.is_empty() {
            return Ok(ce);
        }
        let objective = (sum_terms(&terms)? / terms.len() as f64)?;
        Ok((ce + (objective * self.weight)?)?)
    }
}
