//! [`FusionClassifier`]: each input standardised and encoded, a missing input's features
//! imputed where configured, then the fusion method's logits. Variables:
//! `encoders.<name>.*`, `fusion.*`, `impute.*`.

use braid_core::{Error, Features, Result};
use braid_encoders::Encoder;
use candle_core::{Device, Tensor};
use candle_nn::VarBuilder;

use crate::config::FusionConfig;
use crate::fusion::pooled;
use crate::methods::{build, Imputer};
use crate::FusionModel;

/// Encoders + fusion method (+ imputer) from one [`FusionConfig`].
pub struct FusionClassifier {
    cfg: FusionConfig,
    encoders: Vec<Box<dyn Encoder>>,
    /// Per input: mean and std shaped `[1, channels, 1, ...]`, or `None`.
    stats: Vec<Option<(Tensor, Tensor)>>,
    /// Per input: the encoder reads `[batch, time, channels]` (the time-series encoders),
    /// so a channels-first sample is transposed on the way in.
    time_major: Vec<bool>,
    method: Box<dyn FusionModel>,
    imputer: Option<Imputer>,
}

impl std::fmt::Debug for FusionClassifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FusionClassifier").field("cfg", &self.cfg).finish_non_exhaustive()
    }
}

/// Standardised inputs and their features, `None` where an input is missing.
type Encoded = (Vec<Option<Tensor>>, Vec<Option<Features>>);

/// The prefix of the encoders' variables (a frozen-encoder run leaves them out).
pub const ENCODER_PREFIX: &str = "encoders.";

impl FusionClassifier {
    /// Builds the model `cfg` describes under `vb` (fresh or loaded variables).
    pub fn new(cfg: &FusionConfig, vb: VarBuilder, device: &Device) -> Result<Self> {
        cfg.validate("fusion")?;
        let encoders = cfg
            .inputs
            .iter()
            .enumerate()
            .map(|(i, input)| {
                input.encoder.build(vb.pp(format!("encoders.{}", input.name))).map_err(|e| {
                    Error::config(format!("fusion.inputs[{i}].encoder"), e.to_string())
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let stats = cfg
            .inputs
            .iter()
            .map(|input| {
                if input.mean.is_empty() || input.std.is_empty() {
                    return Ok(None);
                }
                let mut shape = vec![1, input.shape[0]];
                shape.extend(std::iter::repeat_n(1, input.shape.len() - 1));
                let t = |v: &[f32]| Tensor::from_slice(v, shape.as_slice(), device);
                Ok(Some((t(&input.mean)?, t(&input.std)?)))
            })
            .collect::<Result<Vec<_>>>()?;
        let time_major = cfg
            .inputs
            .iter()
            .map(|i| {
                use braid_encoders::EncoderConfig as E;
                matches!(i.encoder, E::Cnn(_) | E::ImuPatch(_) | E::Recurrent(_))
                    && i.shape.len() == 2
            })
            .collect();
        let dims: Vec<usize> = encoders.iter().map(|e| e.output_dim()).collect();
        let sizes: Vec<usize> = cfg.inputs.iter().map(|i| i.shape.iter().product()).collect();
        let method =
            build(&cfg.method, &dims, &sizes, cfg.classes.len(), cfg.hidden, vb.pp("fusion"))?;
        let imputer =
            cfg.impute.map(|k| Imputer::new(&dims, cfg.hidden, k, vb.pp("impute"))).transpose()?;
        Ok(Self { cfg: cfg.clone(), encoders, stats, time_major, method, imputer })
    }

    /// The configuration it was built from.
    pub fn config(&self) -> &FusionConfig {
        &self.cfg
    }

    /// Checks input `i`'s shape `[batch, ...shape]` and standardises it.
    pub fn standardise(&self, i: usize, x: &Tensor) -> Result<Tensor> {
        let input = &self.cfg.inputs[i];
        if x.rank() != input.shape.len() + 1 || x.dims()[1..] != input.shape[..] {
            let mut want = vec![x.dims().first().copied().unwrap_or(0)];
            want.extend(&input.shape);
            return Err(Error::shape(format!("input `{}`", input.name), &want, x.dims()));
        }
        Ok(match &self.stats[i] {
            Some((m, s)) => x.broadcast_sub(m)?.broadcast_div(s)?,
            None => x.clone(),
        })
    }

    fn check_arity(&self, inputs: &[Option<Tensor>]) -> Result<()> {
        if inputs.len() != self.cfg.inputs.len() {
            return Err(Error::Invalid(format!(
                "the fusion model reads {} inputs, {} were given",
                self.cfg.inputs.len(),
                inputs.len()
            )));
        }
        Ok(())
    }

    /// Standardised inputs and their encoder features (imputed where configured).
    fn encode(&self, inputs: &[Option<Tensor>]) -> Result<Encoded> {
        self.check_arity(inputs)?;
        let raw: Vec<Option<Tensor>> = inputs
            .iter()
            .enumerate()
            .map(|(i, x)| x.as_ref().map(|x| self.standardise(i, x)).transpose())
            .collect::<Result<_>>()?;
        let mut feats: Vec<Option<Features>> = raw
            .iter()
            .enumerate()
            .map(|(i, x)| {
                x.as_ref()
                    .map(|x| {
                        let x = if self.time_major[i] {
                            x.transpose(1, 2)?.contiguous()?
                        } else {
                            x.clone()
                        };
                        self.encoders[i].encode(&x, None)
                    })
                    .transpose()
            })
            .collect::<Result<_>>()?;
        if let Some(imp) = &self.imputer {
            if feats.iter().any(Option::is_none) {
                let filled = imp.fill(&pooled(&feats)?)?;
                for (f, z) in feats.iter_mut().zip(filled) {
                    if let (None, Some(z)) = (&f, z) {
                        *f = Some(Features::new(z.unsqueeze(1)?, None)?);
                    }
                }
            }
        }
        Ok((raw, feats))
    }

    /// inputs: one per configured input in raw units `[batch, ...shape]`, `None` where
    /// missing -> logits `[batch, classes]`.
    pub fn forward(&self, inputs: &[Option<Tensor>]) -> Result<Tensor> {
        let (_, feats) = self.encode(inputs)?;
        self.method.forward(&feats)
    }

    /// The training loss of a batch: the method's loss (with its own terms) when every
    /// input is present; with an imputer, plus `impute_weight` times its own loss and, for
    /// each input, the cross-entropy with that input's features imputed from the others'
    /// (so the classifier, the imputer and each encoder learn to do without it); the plain
    /// cross-entropy of the (imputed) forward when an input was dropped. labels: `[batch]`.
    pub fn loss(&self, inputs: &[Option<Tensor>], labels: &Tensor) -> Result<Tensor> {
        let (raw, feats) = self.encode(inputs)?;
        let all: Option<Vec<Tensor>> = raw.into_iter().collect();
        let Some(raw) = all else {
            return braid_nn::cross_entropy(&self.method.forward(&feats)?, labels, None);
        };
        let loss = self.method.loss(&feats, &raw, labels)?;
        let Some(imp) = &self.imputer else { return Ok(loss) };
        let z: Vec<Tensor> = pooled(&feats)?.into_iter().flatten().collect();
        let mut terms = vec![loss, (imp.loss(&z)? * self.cfg.impute_weight)?];
        for m in 0..feats.len() {
            let mut partial: Vec<Option<Tensor>> = z.iter().cloned().map(Some).collect();
            partial[m] = None;
            let filled = imp.fill(&partial)?;
            let with: Vec<Option<Features>> = filled
                .into_iter()
                .map(|z| z.map(|z| Features::new(z.unsqueeze(1)?, None)).transpose())
                .collect::<Result<_>>()?;
            let ce = braid_nn::cross_entropy(&self.method.forward(&with)?, labels, None)?;
            terms.push((ce * self.cfg.impute_weight)?);
        }
        crate::fusion::sum_terms(&terms)
    }
}
