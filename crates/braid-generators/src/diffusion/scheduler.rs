//! The DDIM (Song et al. 2021, deterministic, eta 0) and Euler (Karras et al. 2022,
//! `EulerDiscreteScheduler` without churn) samplers of diffusers, read from a
//! `scheduler_config.json`. Reference: `diffusers/schedulers/scheduling_ddim.py` and
//! `scheduling_euler_discrete.py`: the same beta schedules, timestep spacings and
//! prediction types; options Braid does not implement are refused by name.

use std::path::Path;

use braid_core::{Error, Result};
use candle_core::Tensor;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::config::split_fixed;

/// Which sampler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchedulerKind {
    /// `DDIMScheduler`.
    Ddim,
    /// `EulerDiscreteScheduler`.
    Euler,
}

/// What the model predicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Prediction {
    /// The added noise.
    Epsilon,
    /// `v = sqrt(a) eps - sqrt(1 - a) x0` (Salimans & Ho 2022).
    VPrediction,
    /// The clean sample.
    Sample,
}

/// How inference timesteps are spread over the training ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Spacing {
    /// Evenly from 0 to N - 1.
    Linspace,
    /// Multiples of N / steps from 0, plus `steps_offset`.
    Leading,
    /// Multiples of N / steps down from N, minus one.
    Trailing,
}

/// The fields both samplers read (diffusers' names).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct Fields {
    #[serde(default = "n_train")]
    num_train_timesteps: usize,
    #[serde(default = "beta_start")]
    beta_start: f64,
    #[serde(default = "beta_end")]
    beta_end: f64,
    #[serde(default = "linear")]
    beta_schedule: String,
    #[serde(default)]
    trained_betas: Option<Vec<f64>>,
    #[serde(default = "epsilon")]
    prediction_type: Prediction,
    timestep_spacing: Option<Spacing>,
    #[serde(default)]
    steps_offset: usize,
    // DDIM only.
    #[serde(default)]
    clip_sample: bool,
    #[serde(default = "one")]
    clip_sample_range: f64,
    #[serde(default)]
    set_alpha_to_one: bool,
    // Accepted and unused while their switches are off (checked in `FIXED`).
    #[serde(default)]
    dynamic_thresholding_ratio: Option<f64>,
    #[serde(default)]
    sample_max_value: Option<f64>,
}

fn n_train() -> usize {
    1000
}
fn beta_start() -> f64 {
    0.0001
}
fn beta_end() -> f64 {
    0.02
}
fn linear() -> String {
    "linear".into()
}
fn epsilon() -> Prediction {
    Prediction::Epsilon
}
fn one() -> f64 {
    1.0
}

/// Switches accepted only at their "off" value.
fn fixed() -> Vec<(&'static str, Vec<Value>)> {
    let f = || vec![json!(false), Value::Null];
    vec![
        ("thresholding", f()),
        ("rescale_betas_zero_snr", f()),
        ("use_karras_sigmas", f()),
        ("use_exponential_sigmas", f()),
        ("use_beta_sigmas", f()),
        ("interpolation_type", vec![json!("linear")]),
        ("timestep_type", vec![json!("discrete")]),
        ("final_sigmas_type", vec![json!("zero")]),
        ("sigma_min", vec![Value::Null]),
        ("sigma_max", vec![Value::Null]),
    ]
}

/// A configured sampler (no state: [`Self::plan`] gives the steps for a step count).
#[derive(Debug, Clone, PartialEq)]
pub struct Scheduler {
    kind: SchedulerKind,
    alphas_cumprod: Vec<f64>,
    prediction: Prediction,
    spacing: Spacing,
    steps_offset: usize,
    clip_sample: Option<f64>,
    final_alpha: f64,
}

/// One denoising step: the timestep the model is called at and what the update needs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Step {
    /// The timestep passed to the model.
    pub t: f64,
    /// Index of the step in the plan.
    pub index: usize,
}

/// The timesteps for a number of inference steps, and for Euler the sigmas (one more,
/// ending at 0).
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Model timesteps, from noisiest.
    pub timesteps: Vec<f64>,
    /// Euler's noise levels (empty for DDIM).
    pub sigmas: Vec<f64>,
    /// DDIM's gap between consecutive timesteps (`N / steps`).
    step_ratio: usize,
}

impl Scheduler {
    /// Reads `scheduler_config.json`; its `_class_name` picks the sampler.
    pub fn from_file(path: &Path) -> Result<Self> {
        Self::from_file_as(path, None)
    }

    /// [`Self::from_file`], sampled by `kind` when given whatever `_class_name` says (as
    /// diffusers' `DDIMScheduler.from_config(pndm.config)`): the noise schedule of a
    /// folder whose own sampler Braid lacks (SD 1.x ships `PNDMScheduler`).
    pub fn from_file_as(path: &Path, kind: Option<SchedulerKind>) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let mut map: Map<String, Value> =
            serde_json::from_str(&text).map_err(|e| Error::format(path, e.to_string()))?;
        if let Some(kind) = kind {
            let class = match kind {
                SchedulerKind::Ddim => "DDIMScheduler",
                SchedulerKind::Euler => "EulerDiscreteScheduler",
            };
            map.insert("_class_name".into(), class.into());
        }
        Self::from_map(map).map_err(|e| Error::format(path, e.to_string()))
    }

    /// From the JSON object of a `scheduler_config.json`.
    pub fn from_map(mut map: Map<String, Value>) -> Result<Self> {
        let kind = match map.get("_class_name").and_then(Value::as_str) {
            Some("DDIMScheduler") => SchedulerKind::Ddim,
            Some("EulerDiscreteScheduler") => SchedulerKind::Euler,
            Some(other) => {
                return Err(Error::config(
                    "_class_name",
                    format!(
                        "scheduler {other} is not supported (DDIMScheduler, \
                         EulerDiscreteScheduler); sample its noise schedule with one of \
                         those instead (braid draw --scheduler ddim | euler)"
                    ),
                ))
            }
            None => return Err(Error::config("_class_name", "missing: which scheduler is this?")),
        };
        // PNDM's own switch; meaningless to the samplers here.
        map.remove("skip_prk_steps");
        let rest = split_fixed(map, &fixed())?;
        let f: Fields = serde_json::from_value(Value::Object(rest))
            .map_err(|e| Error::config("scheduler", e.to_string()))?;
        let betas = betas(&f)?;
        let mut alphas_cumprod = Vec::with_capacity(betas.len());
        let mut acc = 1.0;
        for b in &betas {
            acc *= 1.0 - b;
            alphas_cumprod.push(acc);
        }
        let default_spacing = match kind {
            SchedulerKind::Ddim => Spacing::Leading,
            SchedulerKind::Euler => Spacing::Linspace,
        };
        Ok(Self {
            kind,
            final_alpha: if f.set_alpha_to_one { 1.0 } else { alphas_cumprod[0] },
            alphas_cumprod,
            prediction: f.prediction_type,
            spacing: f.timestep_spacing.unwrap_or(default_spacing),
            steps_offset: f.steps_offset,
            clip_sample: (kind == SchedulerKind::Ddim && f.clip_sample)
                .then_some(f.clip_sample_range),
        })
    }

    /// The product of `1 - beta` up to each training timestep (what noising uses).
    pub fn alphas_cumprod(&self) -> &[f64] {
        &self.alphas_cumprod
    }

    /// What the model predicts.
    pub fn prediction(&self) -> Prediction {
        self.prediction
    }

    /// The same noise schedule sampled by `kind` (as diffusers'
    /// `EulerDiscreteScheduler.from_config(ddim.config)`); DDIM's clipping applies to DDIM
    /// only.
    pub fn with_kind(&self, kind: SchedulerKind) -> Self {
        Self { kind, ..self.clone() }
    }

    /// Which sampler.
    pub fn kind(&self) -> SchedulerKind {
        self.kind
    }

    /// The timesteps (and sigmas) for `steps` inference steps.
    pub fn plan(&self, steps: usize) -> Result<Plan> {
        let n = self.alphas_cumprod.len();
        if steps == 0 || steps > n {
            return Err(Error::config("steps", format!("{steps}: must be 1 to {n}")));
        }
        let ratio = n / steps;
        let timesteps: Vec<f64> = match (self.spacing, self.kind) {
            (Spacing::Linspace, SchedulerKind::Ddim) => {
                // numpy rounds half to even.
                linspace(0.0, (n - 1) as f64, steps)
                    .into_iter()
                    .rev()
                    .map(f64::round_ties_even)
                    .collect()
            }
            (Spacing::Linspace, SchedulerKind::Euler) => {
                // numpy's float32 linspace, as diffusers computes it.
                linspace(0.0, (n - 1) as f64, steps)
                    .into_iter()
                    .rev()
                    .map(|t| t as f32 as f64)
                    .collect()
            }
            (Spacing::Leading, _) => {
                (0..steps).rev().map(|i| (i * ratio + self.steps_offset) as f64).collect()
            }
            (Spacing::Trailing, _) => {
                let r = n as f64 / steps as f64;
                let mut ts = Vec::new();
                let mut x = n as f64;
                while x > 0.0 {
                    ts.push(x.round_ties_even() - 1.0);
                    x -= r;
                }
                ts
            }
        };
        let sigmas = match self.kind {
            SchedulerKind::Ddim => Vec::new(),
            SchedulerKind::Euler => {
                let full: Vec<f64> =
                    self.alphas_cumprod.iter().map(|a| ((1.0 - a) / a).sqrt()).collect();
                let mut s: Vec<f64> = timesteps.iter().map(|&t| interp(t, &full)).collect();
                s.push(0.0);
                s
            }
        };
        Ok(Plan { timesteps, sigmas, step_ratio: ratio })
    }

    /// The factor the initial unit noise is multiplied by.
    pub fn init_noise_sigma(&self, plan: &Plan) -> f64 {
        match self.kind {
            SchedulerKind::Ddim => 1.0,
            SchedulerKind::Euler => {
                let max = plan.sigmas.iter().copied().fold(0.0, f64::max);
                match self.spacing {
                    Spacing::Linspace | Spacing::Trailing => max,
                    Spacing::Leading => (max * max + 1.0).sqrt(),
                }
            }
        }
    }

    /// What the model is fed at step `i` (Euler divides by `sqrt(sigma^2 + 1)`).
    pub fn scale_model_input(&self, plan: &Plan, i: usize, x: &Tensor) -> Result<Tensor> {
        match self.kind {
            SchedulerKind::Ddim => Ok(x.clone()),
            SchedulerKind::Euler => {
                let s = plan.sigmas[i];
                Ok((x / (s * s + 1.0).sqrt())?)
            }
        }
    }

    /// One update: the sample at step `i` and the model's output -> the sample at `i + 1`.
    pub fn step(
        &self,
        plan: &Plan,
        i: usize,
        sample: &Tensor,
        model_out: &Tensor,
    ) -> Result<Tensor> {
        match self.kind {
            SchedulerKind::Ddim => self.ddim_step(plan, i, sample, model_out),
            SchedulerKind::Euler => {
                let (s, next) = (plan.sigmas[i], plan.sigmas[i + 1]);
                let x0 = match self.prediction {
                    Prediction::Epsilon => (sample - (model_out * s)?)?,
                    Prediction::Sample => model_out.clone(),
                    Prediction::VPrediction => {
                        ((model_out * (-s / (s * s + 1.0).sqrt()))? + (sample / (s * s + 1.0))?)?
                    }
                };
                let derivative = ((sample - x0)? / s)?;
                Ok((sample + (derivative * (next - s))?)?)
            }
        }
    }

    fn ddim_step(&self, plan: &Plan, i: usize, sample: &Tensor, out: &Tensor) -> Result<Tensor> {
        let t = plan.timesteps[i] as i64;
        let prev = t - plan.step_ratio as i64;
        let a = self.alphas_cumprod[t as usize];
        let a_prev = if prev >= 0 { self.alphas_cumprod[prev as usize] } else { self.final_alpha };
        let (sa, sb) = (a.sqrt(), (1.0 - a).sqrt());
        let (mut x0, eps) = match self.prediction {
            Prediction::Epsilon => (((sample - (out * sb)?)? / sa)?, out.clone()),
            Prediction::Sample => (out.clone(), ((sample - (out * sa)?)? / sb)?),
            Prediction::VPrediction => {
                (((sample * sa)? - (out * sb)?)?, ((out * sa)? + (sample * sb)?)?)
            }
        };
        if let Some(r) = self.clip_sample {
            x0 = x0.clamp(-r, r)?;
        }
        Ok(((x0 * a_prev.sqrt())? + (eps * (1.0 - a_prev).sqrt())?)?)
    }
}

/// `beta_schedule` -> betas.
fn betas(f: &Fields) -> Result<Vec<f64>> {
    let n = f.num_train_timesteps;
    if n == 0 || n > 100_000 {
        return Err(Error::config("num_train_timesteps", format!("{n}: must be 1 to 100000")));
    }
    let betas = if let Some(b) = &f.trained_betas {
        if b.len() != n {
            return Err(Error::config(
                "trained_betas",
                format!("{} values for {n} timesteps", b.len()),
            ));
        }
        b.clone()
    } else {
        match f.beta_schedule.as_str() {
            "linear" => linspace(f.beta_start, f.beta_end, n),
            "scaled_linear" => linspace(f.beta_start.sqrt(), f.beta_end.sqrt(), n)
                .into_iter()
                .map(|b| b * b)
                .collect(),
            "squaredcos_cap_v2" => {
                let bar =
                    |t: f64| ((t + 0.008) / 1.008 * std::f64::consts::FRAC_PI_2).cos().powi(2);
                (0..n)
                    .map(|i| {
                        let (t1, t2) = (i as f64 / n as f64, (i + 1) as f64 / n as f64);
                        (1.0 - bar(t2) / bar(t1)).min(0.999)
                    })
                    .collect()
            }
            other => {
                return Err(Error::config(
                    "beta_schedule",
                    format!("{other} is not supported (linear, scaled_linear, squaredcos_cap_v2)"),
                ))
            }
        }
    };
    if let Some(b) = betas.iter().find(|b| !(**b > 0.0 && **b < 1.0)) {
        return Err(Error::config("beta_start", format!("a beta of {b} is outside (0, 1)")));
    }
    Ok(betas)
}

fn linspace(a: f64, b: f64, n: usize) -> Vec<f64> {
    if n == 1 {
        return vec![a];
    }
    (0..n).map(|i| a + (b - a) * i as f64 / (n - 1) as f64).collect()
}

/// `np.interp(t, arange(len), ys)`.
fn interp(t: f64, ys: &[f64]) -> f64 {
    let last = ys.len() - 1;
    if t <= 0.0 {
        return ys[0];
    }
    if t >= last as f64 {
        return ys[last];
    }
    let i = t.floor() as usize;
    let w = t - i as f64;
    ys[i] * (1.0 - w) + ys[i + 1] * w
}
