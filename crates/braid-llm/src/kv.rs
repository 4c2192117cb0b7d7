//! A growable key/value buffer for frozen inference: new positions are written in place
//! (`slice_set`) into storage that doubles when full, so a decoding step copies only its
//! own keys and values (llama.cpp keeps a fixed `n_ctx` buffer the same way).

use braid_core::Result;
use candle_core::Tensor;

/// Smallest capacity allocated, in positions.
const MIN_CAPACITY: usize = 256;

/// One layer's keys and values, `[batch, kv_heads, capacity, head_dim]` each.
#[derive(Debug, Clone, Default)]
pub struct KvBuffer {
    kv: Option<(Tensor, Tensor)>,
    len: usize,
}

impl KvBuffer {
    /// Positions stored.
    pub fn len(&self) -> usize {
        self.len
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
        if need > self.capacity() {
            self.grow(k, need)?;
        }
        let Some((bk, bv)) = &self.kv else {
            return Err(braid_core::Error::Invalid("kv buffer unallocated".into()));
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
        let mut buf = KvBuffer::default();
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
}
