//! The `diffusion` stage as a [`Task`]: DDPM's noise-prediction loss on batches of
//! images, each at its own random timestep, with captions dropped for guidance.

use std::collections::BTreeMap;

use braid_core::Result;
use braid_generators::diffusion::{Prediction, StableDiffusion};
use candle_core::{Tensor, Var};
use candle_nn::VarMap;

use crate::optim::prefixed_vars;
use crate::recipe::fuse::mix;
use crate::Task;

/// Images `[n, 3, s, s]` in [-1, 1] and their caption token ids `[n, tokens]`.
#[derive(Debug, Clone)]
pub struct DiffusionExamples {
    /// Pixels.
    pub images: Tensor,
    /// Caption ids, padded to the text encoder's length.
    pub ids: Tensor,
}

impl DiffusionExamples {
    /// Examples.
    pub fn len(&self) -> usize {
        self.images.dim(0).unwrap_or(0)
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Training the generator.
pub struct DiffusionTask<'a> {
    /// The model being trained.
    pub model: &'a StableDiffusion,
    /// Its variables.
    pub vars: &'a VarMap,
    /// Training examples.
    pub train: DiffusionExamples,
    /// Held-out examples (loss at fixed timesteps and noise).
    pub eval: Option<DiffusionExamples>,
    /// Ids of the empty prompt `[1, tokens]`.
    pub empty: Tensor,
    /// Chance a caption is dropped.
    pub cond_dropout: f64,
    /// Seed of the noise and timesteps.
    pub seed: u64,
}

impl DiffusionTask<'_> {
    /// The denoising loss on `idx` of `ex`, timesteps and noise drawn from `seed`;
    /// captions dropped with chance `drop`.
    fn denoising_loss(
        &self,
        ex: &DiffusionExamples,
        idx: &[usize],
        seed: u64,
        drop: f64,
    ) -> Result<Tensor> {
        let dev = ex.images.device();
        let sel = Tensor::new(idx.iter().map(|&i| i as u32).collect::<Vec<_>>(), dev)?;
        let x0 = ex.images.index_select(&sel, 0)?;
        let mut ids = ex.ids.index_select(&sel, 0)?;
        let b = idx.len();
        let ac = self.model.scheduler.alphas_cumprod();
        let mut rng = mix(seed);
        let mut ts = Vec::with_capacity(b);
        let mut keep = Vec::with_capacity(b);
        for _ in 0..b {
            rng = mix(rng);
            ts.push((rng % ac.len() as u64) as usize);
            rng = mix(rng);
            keep.push((rng >> 11) as f64 / (1u64 << 53) as f64 >= drop);
        }
        if keep.iter().any(|k| !k) {
            let rows = (0..b)
                .map(|i| if keep[i] { ids.narrow(0, i, 1) } else { Ok(self.empty.clone()) })
                .collect::<candle_core::Result<Vec<_>>>()?;
            ids = Tensor::cat(&rows, 0)?;
        }
        let (sa, sb): (Vec<f32>, Vec<f32>) =
            ts.iter().map(|&t| (ac[t].sqrt() as f32, (1.0 - ac[t]).sqrt() as f32)).unzip();
        let col = |v: Vec<f32>| Tensor::from_vec(v, (b, 1, 1, 1), dev);
        let (sa, sb) = (col(sa)?, col(sb)?);
        let shape = x0.dims4()?;
        let noise = braid_generators::diffusion::pipeline::randn(shape, mix(rng), dev)?;
        let xt = (x0.broadcast_mul(&sa)? + noise.broadcast_mul(&sb)?)?;
        let t = Tensor::new(ts.iter().map(|&t| t as f32).collect::<Vec<_>>(), dev)?;
        let cond = self.model.encode_ids(&ids)?;
        let out = self.model.unet.forward(&xt, &t, &cond)?;
        let target = match self.model.scheduler.prediction() {
            Prediction::Epsilon => noise,
            Prediction::Sample => x0,
            Prediction::VPrediction => (noise.broadcast_mul(&sa)? - x0.broadcast_mul(&sb)?)?,
        };
        Ok((out - target)?.sqr()?.mean_all()?)
    }
}

impl Task for DiffusionTask<'_> {
    fn unsplittable(&self) -> Option<String> {
        Some("the diffusion stage draws its noise and timesteps per batch".into())
    }

    fn train_len(&self) -> usize {
        self.train.len()
    }

    fn loss(&self, indices: &[usize], step: usize) -> Result<Tensor> {
        let seed = self.seed ^ (step as u64).wrapping_mul(0xD1B5_4A32_D192_ED03);
        self.denoising_loss(&self.train, indices, seed, self.cond_dropout)
    }

    fn evaluate(&self) -> Result<BTreeMap<String, f64>> {
        let mut out = BTreeMap::new();
        let Some(ev) = &self.eval else { return Ok(out) };
        let n = ev.len().min(256);
        let (mut sum, mut count) = (0.0, 0usize);
        for (k, start) in (0..n).step_by(32).enumerate() {
            let idx: Vec<usize> = (start..(start + 32).min(n)).collect();
            let loss = self.denoising_loss(ev, &idx, 0xE5A1 + k as u64, 0.0)?;
            sum += loss.to_scalar::<f32>()? as f64 * idx.len() as f64;
            count += idx.len();
        }
        if count > 0 {
            out.insert("loss".into(), sum / count as f64);
        }
        Ok(out)
    }

    fn trainable(&self) -> Result<Vec<(String, Var)>> {
        prefixed_vars("generator", self.vars)
    }
}
