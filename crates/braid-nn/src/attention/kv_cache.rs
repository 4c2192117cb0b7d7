//! Keys and values of earlier positions, kept between decoding steps: one cache for every
//! model, trainable or frozen. New positions are written in place (`slice_set`) into
//! storage that doubles when full, so a decoding step copies only its own keys and values
//! (llama.cpp keeps a fixed `n_ctx` buffer the same way). Keys and values that carry a
//! gradient are kept by concatenation instead, so a backward pass through cached
//! positions still reaches the weights that made them.

use braid_core::Result;
use candle_core::Tensor;

/// Smallest capacity allocated, in positions.
const MIN_CAPACITY: usize = 256;

/// One attention layer's post-RoPE keys and values (before KV-head repetition),
/// `[batch, kv_heads, capacity, head_dim]` each, the first `len` positions in use.
#[derive(Debug, Clone, Default)]
pub struct KvCache {
    kv: Option<(Tensor, Tensor)>,
    len: usize,
}

impl KvCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Positions cached so far (the offset of the next step).
    pub fn len(&self) -> usize {
        self.len
    }

    /// True before the first step.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn capacity(&self) -> usize {
        self.kv.as_ref().map_or(0, |(k, _)| k.dims().get(2).copied().unwrap_or(0))
    }

    /// Moves the stored positions into storage for at least `need` positions.
    fn grow(&mut self, k: &Tensor, need: usize) -> Result<()> {
        let (b, h, _, d) = k.dims4()?;
        let cap = need.next_power_of_two().max(MIN_CAPACITY);
        let fresh = || Tensor::zeros((b, h, cap, d), k.dtype(), k.device());
        let (nk, nv) = (fresh()?, fresh()?);
        if let Some((ok, ov)) = &self.kv {
            nk.slice_set(&ok.narrow(2, 0, self.len)?.contiguous()?, 2, 0)?;
            nv.slice_set(&ov.narrow(2, 0, self.len)?.contiguous()?, 2, 0)?;
        }
        self.kv = Some((nk, nv));
        Ok(())
    }

    /// Stores this step's keys and values and returns views of all positions.
    ///
    /// k, v: [batch, kv_heads, step, head_dim] -> ([batch, kv_heads, len, head_dim], same)
    pub fn append(&mut self, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        let step = k.dim(2)?;
        let need = self.len + step;
        let batch_changed = self.kv.as_ref().is_some_and(|(ok, _)| ok.dim(0).ok() != k.dim(0).ok());
        if batch_changed {
            self.reset();
        }
        if k.track_op() || v.track_op() {
            // In-place writes would cut the graph: keep exactly the concatenation.
            let (k, v) = match self.stored()? {
                Some((pk, pv)) => (Tensor::cat(&[&pk, k], 2)?, Tensor::cat(&[&pv, v], 2)?),
                None => (k.clone(), v.clone()),
            };
            self.kv = Some((k.clone(), v.clone()));
            self.len = need;
            return Ok((k, v));
        }
        if need > self.capacity() {
            self.grow(k, need)?;
        }
        let Some((bk, bv)) = &self.kv else {
            return Err(braid_core::Error::Invalid("kv cache unallocated".into()));
        };
        bk.slice_set(&k.contiguous()?, 2, self.len)?;
        bv.slice_set(&v.contiguous()?, 2, self.len)?;
        self.len = need;
        Ok((bk.narrow(2, 0, need)?, bv.narrow(2, 0, need)?))
    }

    /// Keeps only the first `len` positions; the storage stays for the next appends.
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// A copy with its own storage whose cached sequence is repeated `batch` times.
    pub fn repeat_batch(&self, batch: usize) -> Result<Self> {
        let mut out = Self::default();
        if let Some((k, v)) = &self.kv {
            let (k, v) = (k.narrow(2, 0, self.len)?, v.narrow(2, 0, self.len)?);
            out.append(&k.repeat((batch, 1, 1, 1))?, &v.repeat((batch, 1, 1, 1))?)?;
        }
        Ok(out)
    }

    /// The stored keys and values, `[batch, kv_heads, len, head_dim]` each.
    fn stored(&self) -> Result<Option<(Tensor, Tensor)>> {
        match &self.kv {
            Some((k, v)) => Ok(Some((k.narrow(2, 0, self.len)?, v.narrow(2, 0, self.len)?))),
            None => Ok(None),
        }
    }

    /// A copy holding only the batch rows `rows`, in that order.
    pub fn select_rows(&self, rows: &[u32]) -> Result<Self> {
        let mut out = Self::default();
        if let (Some((k, v)), false) = (self.stored()?, rows.is_empty()) {
            let idx = Tensor::new(rows, k.device())?;
            let (k, v) = (k.contiguous()?, v.contiguous()?);
            out.append(&k.index_select(&idx, 0)?, &v.index_select(&idx, 0)?)?;
        }
        Ok(out)
    }

    /// The rows of `parts` stacked into one batch, each part's positions moved right to end
    /// at the longest part's length (zeros before them, which the caller masks out).
    pub fn stack(parts: &[&Self]) -> Result<Self> {
        let longest = parts.iter().map(|p| p.len).max().unwrap_or(0);
        let (mut ks, mut vs) = (Vec::new(), Vec::new());
        for p in parts {
            let Some((k, v)) = p.stored()? else { continue };
            let pad = longest - p.len;
            let left = |t: &Tensor| -> Result<Tensor> {
                if pad == 0 {
                    return Ok(t.clone());
                }
                let (b, h, _, d) = t.dims4()?;
                let zeros = Tensor::zeros((b, h, pad, d), t.dtype(), t.device())?;
                Ok(Tensor::cat(&[&zeros, t], 2)?)
            };
            ks.push(left(&k)?);
            vs.push(left(&v)?);
        }
        let mut out = Self::default();
        if !ks.is_empty() {
            out.append(&Tensor::cat(&ks, 0)?, &Tensor::cat(&vs, 0)?)?;
        }
        Ok(out)
    }

    /// One row of `n` zero positions shaped like this buffer's (placeholders that a mask
    /// hides, so that a sequence joining the batch sits at the batch's positions).
    pub fn zeros_like(&self, n: usize) -> Result<Self> {
        let mut out = Self::default();
        if let (Some((k, _)), true) = (&self.kv, n > 0) {
            let (_, h, _, d) = k.dims4()?;
            let z = Tensor::zeros((1, h, n, d), k.dtype(), k.device())?;
            out.append(&z, &z)?;
        }
        Ok(out)
    }

    /// A copy without its first `n` positions.
    pub fn drop_front(&self, n: usize) -> Result<Self> {
        let mut out = Self::default();
        if let (Some((k, v)), true) = (self.stored()?, n < self.len) {
            let keep = self.len - n;
            out.append(&k.narrow(2, n, keep)?.contiguous()?, &v.narrow(2, n, keep)?.contiguous()?)?;
        }
        Ok(out)
    }

    /// Forgets every position (keeps nothing allocated).
    pub fn reset(&mut self) {
        self.kv = None;
        self.len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn appends_across_growth_keep_every_position() -> Result<()> {
        let mut buf = KvCache::default();
        let dev = Device::Cpu;
        let mut all = Vec::new();
        for step in [200usize, 100, 1] {
            let k = Tensor::randn(0f32, 1., (1, 2, step, 4), &dev)?;
            let (ka, va) = buf.append(&k, &k)?;
            all.push(k);
            let want = Tensor::cat(&all, 2)?;
            assert_eq!(ka.dims(), want.dims());
            let diff = (ka - &want)?.abs()?.max_all()?.to_scalar::<f32>()?;
            assert_eq!(diff, 0.0);
            assert_eq!(va.flatten_all()?.to_vec1::<f32>()?, want.flatten_all()?.to_vec1::<f32>()?);
        }
        assert_eq!(buf.len(), 301);
        Ok(())
    }

    #[test]
    fn rows_are_selected_and_stacked_right_aligned() -> Result<()> {
        let dev = Device::Cpu;
        let (mut a, mut b) = (KvCache::default(), KvCache::default());
        let ka = Tensor::randn(0f32, 1., (2, 1, 3, 2), &dev)?;
        let kb = Tensor::randn(0f32, 1., (1, 1, 5, 2), &dev)?;
        a.append(&ka, &ka)?;
        b.append(&kb, &kb)?;
        let s = KvCache::stack(&[&a, &b])?;
        assert_eq!(s.len(), 5);
        let (k, _) = s.stored()?.unwrap();
        assert_eq!(k.dims(), [3, 1, 5, 2]);
        // a's rows end at position 5 after two zero positions; b's row is as it was.
        let a_tail = k.narrow(0, 0, 2)?.narrow(2, 2, 3)?;
        assert_eq!(a_tail.flatten_all()?.to_vec1::<f32>()?, ka.flatten_all()?.to_vec1::<f32>()?);
        let zeros = k.narrow(0, 0, 2)?.narrow(2, 0, 2)?.abs()?.sum_all()?.to_scalar::<f32>()?;
        assert_eq!(zeros, 0.0);
        let one = s.select_rows(&[2, 0])?;
        let (k1, _) = one.stored()?.unwrap();
        assert_eq!(k1.dims(), [2, 1, 5, 2]);
        let row = k1.narrow(0, 0, 1)?.flatten_all()?.to_vec1::<f32>()?;
        assert_eq!(row, kb.flatten_all()?.to_vec1::<f32>()?);
        assert_eq!(s.select_rows(&[])?.len(), 0);
        Ok(())
    }

    #[test]
    fn keys_that_carry_a_gradient_keep_it_through_the_cache() -> Result<()> {
        let dev = Device::Cpu;
        let w = candle_core::Var::from_tensor(&Tensor::ones(
            (1, 1, 1, 2),
            candle_core::DType::F32,
            &dev,
        )?)?;
        let mut cache = KvCache::new();
        for _ in 0..3 {
            let k = w.as_tensor().clone();
            cache.append(&k, &k)?;
        }
        let (k, v) = cache.append(w.as_tensor(), w.as_tensor())?;
        assert_eq!(cache.len(), 4);
        let grads = (k.sum_all()? + v.sum_all()?)?.backward()?;
        let g = grads.get(w.as_tensor()).expect("a gradient reaches the weight");
        // Four positions, each a key and a value made from w.
        assert_eq!(g.flatten_all()?.to_vec1::<f32>()?, [8.0, 8.0], "every cached position");
        Ok(())
    }
}
