//! Filling in a missing input's features from the present ones: one MLP per ordered pair
//! of inputs, `z_b ~ T_ab(z_a)`, trained by MSE on detached features (so it never bends
//! the encoders), and, in the adversarial variant, also against a discriminator of real
//! vs imputed features behind gradient reversal (the generator-based imputation of
//! MultiBench's robustness study, in its simplest form).

use braid_core::Result;
use candle_core::Tensor;
use candle_nn::VarBuilder;

use crate::config::ImputeKind;
use crate::ops::{bce_logits, grad_reverse, mse, Mlp2};

/// The imputer: `maps.A_to_B`, and `discriminators.B` when adversarial.
pub struct Imputer {
    /// `maps[a][b]`, `None` on the diagonal.
    maps: Vec<Vec<Option<Mlp2>>>,
    discriminators: Option<Vec<Mlp2>>,
}

impl Imputer {
    /// dims: each input's feature width.
    pub fn new(dims: &[usize], hidden: usize, kind: ImputeKind, vb: VarBuilder) -> Result<Self> {
        let maps = dims
            .iter()
            .enumerate()
            .map(|(a, &da)| {
                dims.iter()
                    .enumerate()
                    .map(|(b, &db)| {
                        (a != b)
                            .then(|| Mlp2::new(da, hidden, db, vb.pp(format!("maps.{a}_to_{b}"))))
                            .transpose()
                    })
                    .collect::<Result<Vec<_>>>()
            })
            .collect::<Result<Vec<_>>>()?;
        let discriminators = match kind {
            ImputeKind::Autoencoder => None,
            ImputeKind::Adversarial => Some(
                dims.iter()
                    .enumerate()
                    .map(|(b, &d)| Mlp2::new(d, hidden, 1, vb.pp(format!("discriminators.{b}"))))
                    .collect::<Result<Vec<_>>>()?,
            ),
        };
        Ok(Self { maps, discriminators })
    }

    /// The mean of `T_ab(z_a)` over the present inputs `a`, for each missing `b`; present
    /// inputs are kept. Unchanged when every input is missing.
    pub fn fill(&self, z: &[Option<Tensor>]) -> Result<Vec<Option<Tensor>>> {
        let mut out = z.to_vec();
        for (b, slot) in out.iter_mut().enumerate() {
            if slot.is_some() {
                continue;
            }
            let mut guesses = Vec::new();
            for (a, za) in z.iter().enumerate() {
                if let (Some(za), Some(map)) = (za, &self.maps[a][b]) {
                    guesses.push(map.forward(za)?);
                }
            }
            if !guesses.is_empty() {
                let n = guesses.len() as f64;
                *slot = Some((Tensor::stack(&guesses, 0)?.sum(0)? / n)?);
            }
        }
        Ok(out)
    }

    /// Mean over ordered pairs of the MSE between `T_ab(z_a)` and `z_b` (both detached
    /// features), plus, adversarially, the discriminators' binary cross-entropy on real
    /// (target 1) and reversed-gradient imputed (target 0) features.
    pub fn loss(&self, z: &[Tensor]) -> Result<Tensor> {
        let z: Vec<Tensor> = z.iter().map(Tensor::detach).collect();
        let mut terms = Vec::new();
        for (a, za) in z.iter().enumerate() {
            for (b, zb) in z.iter().enumerate() {
                let Some(map) = &self.maps[a][b] else { continue };
                let guess = map.forward(za)?;
                terms.push(mse(&guess, zb)?);
                if let Some(ds) = &self.discriminators {
                    let real = bce_logits(&ds[b].forward(zb)?, true)?;
                    let fake = bce_logits(&ds[b].forward(&grad_reverse(&guess)?)?, false)?;
                    terms.push(((real + fake)? * 0.5)?);
                }
            }
        }
        Ok((crate::fusion::sum_terms(&terms)? / terms.len() as f64)?)
    }
}
