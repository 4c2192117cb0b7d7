//! Next-token choice from logits: greedy, or temperature / top-k / top-p sampling with a
//! repetition penalty, seeded. Semantics follow `transformers`' logits processors
//! (`RepetitionPenaltyLogitsProcessor`, `TemperatureLogitsWarper`, `TopKLogitsWarper`,
//! `TopPLogitsWarper`, applied in that order).

use braid_core::{Error, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// How the next token is chosen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SamplingConfig {
    /// 0 picks the most likely token (greedy); otherwise logits are divided by it.
    pub temperature: f64,
    /// Keep only the k most likely tokens (0: all).
    pub top_k: usize,
    /// Keep the smallest set of most likely tokens whose probability reaches p (1: all).
    pub top_p: f64,
    /// Above 1 discourages tokens already in the prompt or output (1: off).
    pub repetition_penalty: f32,
    /// Seed of the sampling generator.
    pub seed: u64,
}

impl Default for SamplingConfig {
    fn default() -> Self {
        Self { temperature: 0.0, top_k: 0, top_p: 1.0, repetition_penalty: 1.0, seed: 299_792_458 }
    }
}

impl SamplingConfig {
    /// Fails on a value that would sample nonsense, naming the field: NaN passes every
    /// `<= 0` test, so each bound is checked the positive way round.
    pub fn validate(&self) -> Result<()> {
        let t = self.temperature;
        if !(t.is_finite() && t >= 0.0) {
            return Err(Error::config(
                "temperature",
                format!("must be a finite number >= 0 (0: greedy), got {t}"),
            ));
        }
        let p = self.top_p;
        if !(p > 0.0 && p <= 1.0) {
            return Err(Error::config("top_p", format!("must be in (0, 1] (1: off), got {p}")));
        }
        let r = self.repetition_penalty;
        if !(r.is_finite() && r > 0.0) {
            return Err(Error::config(
                "repetition_penalty",
                format!("must be a finite number > 0 (1: off), got {r}"),
            ));
        }
        Ok(())
    }
}

/// A seeded sampler; one per generated sequence.
#[derive(Debug, Clone)]
pub struct Sampler {
    cfg: SamplingConfig,
    rng: StdRng,
}

impl Sampler {
    /// A sampler seeded with `cfg.seed + stream` (one stream per batch row).
    pub fn new(cfg: &SamplingConfig, stream: u64) -> Self {
        Self { cfg: cfg.clone(), rng: StdRng::seed_from_u64(cfg.seed.wrapping_add(stream)) }
    }

    /// Picks the next token from `logits` (one row, `[vocab]`); `history` holds the
    /// prompt and the tokens generated so far, for the repetition penalty.
    pub fn sample(&mut self, logits: &mut [f32], history: &[u32]) -> u32 {
        let p = self.cfg.repetition_penalty;
        if p != 1.0 {
            let mut seen = vec![false; logits.len()];
            for &t in history {
                if let Some(s) = seen.get_mut(t as usize) {
                    if !*s {
                        *s = true;
                        let l = &mut logits[t as usize];
                        *l = if *l < 0.0 { *l * p } else { *l / p };
                    }
                }
            }
        }
        if self.cfg.temperature <= 0.0 {
            return argmax(logits);
        }
        let t = self.cfg.temperature as f32;
        let mut order: Vec<(u32, f32)> =
            logits.iter().enumerate().map(|(i, &l)| (i as u32, l / t)).collect();
        // Stable: ties keep ascending ids, so top-k 1 equals argmax.
        order.sort_by(|a, b| b.1.total_cmp(&a.1));
        if self.cfg.top_k > 0 {
            order.truncate(self.cfg.top_k.max(1));
        }
        let max = order.first().map_or(0.0, |x| x.1);
        let mut probs: Vec<f32> = order.iter().map(|&(_, l)| (l - max).exp()).collect();
        let total: f32 = probs.iter().sum();
        probs.iter_mut().for_each(|p| *p /= total);
        if self.cfg.top_p < 1.0 {
            let mut cum = 0.0;
            let keep = probs
                .iter()
                .position(|&p| {
                    cum += p;
                    f64::from(cum) >= self.cfg.top_p
                })
                .map_or(probs.len(), |i| i + 1);
            probs.truncate(keep);
        }
        let total: f32 = probs.iter().sum();
        let mut r = self.rng.gen::<f32>() * total;
        for (i, p) in probs.iter().enumerate() {
            r -= p;
            if r <= 0.0 {
                return order[i].0;
            }
        }
        order[probs.len().saturating_sub(1)].0
    }
}

/// Index of the largest value (the first of ties, like `torch.argmax`).
pub fn argmax(xs: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in xs.iter().enumerate() {
        if x > xs[best] {
            best = i;
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(temperature: f64, top_k: usize, top_p: f64) -> SamplingConfig {
        SamplingConfig { temperature, top_k, top_p, ..Default::default() }
    }

    #[test]
    fn greedy_takes_the_first_maximum() {
        let mut s = Sampler::new(&SamplingConfig::default(), 0);
        assert_eq!(s.sample(&mut [0.1, 3.0, 3.0, -1.0], &[]), 1);
    }

    #[test]
    fn repetition_penalty_divides_positive_and_multiplies_negative_logits() {
        let mut s =
            Sampler::new(&SamplingConfig { repetition_penalty: 2.0, ..Default::default() }, 0);
        let mut logits = [2.0, 1.5, -1.0];
        assert_eq!(s.sample(&mut logits, &[0, 2, 0]), 1);
        assert_eq!(logits, [1.0, 1.5, -2.0]);
    }

    #[test]
    fn top_k_one_is_greedy_and_same_seed_same_tokens() {
        let logits: Vec<f32> = (0..50).map(|i| ((i * 37) % 11) as f32).collect();
        let mut s = Sampler::new(&cfg(1.0, 1, 1.0), 7);
        assert_eq!(s.sample(&mut logits.clone(), &[]), argmax(&logits));
        let draw = |seed| {
            let mut s = Sampler::new(&SamplingConfig { seed, ..cfg(1.5, 0, 1.0) }, 0);
            (0..20).map(|_| s.sample(&mut logits.clone(), &[])).collect::<Vec<_>>()
        };
        assert_eq!(draw(1), draw(1));
        assert_ne!(draw(1), draw(2));
    }

    #[test]
    fn nan_sampling_config() {
        assert!(SamplingConfig::default().validate().is_ok());
        assert!(cfg(0.7, 40, 0.9).validate().is_ok());
        let cases = [
            (
                cfg(f64::NAN, 0, 1.0),
                "`temperature`: must be a finite number >= 0 (0: greedy), got NaN",
            ),
            (cfg(f64::INFINITY, 0, 1.0), "`temperature`"),
            (cfg(-0.5, 0, 1.0), "`temperature`"),
            (cfg(1.0, 0, f64::NAN), "`top_p`: must be in (0, 1] (1: off), got NaN"),
            (cfg(1.0, 0, 0.0), "`top_p`"),
            (cfg(1.0, 0, 1.5), "`top_p`"),
            (
                SamplingConfig { repetition_penalty: f32::NAN, ..Default::default() },
                "`repetition_penalty`: must be a finite number > 0",
            ),
            (
                SamplingConfig { repetition_penalty: 0.0, ..Default::default() },
                "`repetition_penalty`",
            ),
            (
                SamplingConfig { repetition_penalty: f32::INFINITY, ..Default::default() },
                "`repetition_penalty`",
            ),
        ];
        for (c, want) in cases {
            let e = c.validate().err().map(|e| e.to_string()).unwrap_or_default();
            assert!(e.contains(want), "{c:?}: {e}");
        }
    }

    #[test]
    fn top_p_keeps_only_the_nucleus() {
        // probabilities ~ [0.64, 0.24, 0.09, 0.03]: p = 0.7 keeps two tokens.
        let logits = [3.0f32, 2.0, 1.0, 0.0];
        let mut s = Sampler::new(&cfg(1.0, 0, 0.7), 3);
        for _ in 0..200 {
            assert!(s.sample(&mut logits.clone(), &[]) < 2);
        }
    }
}
