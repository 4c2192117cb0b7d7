//! Keys and values of earlier positions, kept between decoding steps.

use braid_core::Result;
use candle_core::Tensor;

/// One attention layer's cache of post-RoPE keys and values, before KV-head repetition.
#[derive(Debug, Clone, Default)]
pub struct KvCache {
    kv: Option<(Tensor, Tensor)>,
}

impl KvCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Positions cached so far (the offset of the next step).
    pub fn len(&self) -> usize {
        self.kv.as_ref().map_or(0, |(k, _)| k.dims().get(2).copied().unwrap_or(0))
    }

    /// True before the first step.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets everything (a new sequence).
    pub fn reset(&mut self) {
        self.kv = None;
    }

    /// Keeps only the first `len` positions (a shared prefix to continue from again).
    pub fn truncate(&mut self, len: usize) -> Result<()> {
        if let Some((k, v)) = &self.kv {
            if len < k.dim(2)? {
                self.kv = if len == 0 {
                    None
                } else {
                    Some((k.narrow(2, 0, len)?, v.narrow(2, 0, len)?))
                };
            }
        }
        Ok(())
    }

    /// A copy whose one cached sequence is repeated `batch` times (a shared prefix for a
    /// batch of continuations).
    pub fn repeat_batch(&self, batch: usize) -> Result<Self> {
        let kv = match &self.kv {
            Some((k, v)) => Some((k.repeat((batch, 1, 1, 1))?, v.repeat((batch, 1, 1, 1))?)),
            None => None,
        };
        Ok(Self { kv })
    }

    /// Appends this step's keys and values and returns all of them.
    ///
    /// k, v: [batch, kv_heads, step, head_dim] -> ([batch, kv_heads, len, head_dim], same)
    pub fn append(&mut self, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        let (k, v) = match &self.kv {
            None => (k.clone(), v.clone()),
            Some((pk, pv)) => (Tensor::cat(&[pk, k], 2)?, Tensor::cat(&[pv, v], 2)?),
        };
        self.kv = Some((k.clone(), v.clone()));
        Ok((k, v))
    }
}
