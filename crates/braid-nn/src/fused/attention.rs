//! Scaled dot-product attention, `softmax(scale q k^T + mask) v`, as one kernel per
//! (batch, head) with grouped-query heads read in place (no `repeat_kv` copies), and its
//! backward pass from the probabilities the forward pass kept (recomputed row by row, as
//! FlashAttention, Dao et al. 2022, does per tile, when they are gone):
//! `dv += p do`, `ds = scale p (do v^T - sum(p do v^T))`, `dq = ds k`, `dk += ds q`. At training sequence lengths the products are small (one
//! head of 64 columns) and candle ran each as its own matmul call, 72 per layer for a
//! batch of 8 with 9 heads, plus the mask, softmax and copy kernels between them.

use std::sync::{Arc, Mutex};

use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Tensor};
use rayon::prelude::*;

use super::{dispatch, dot, slice, sum, zeros, Float};

/// Which keys each query may see.
#[derive(Debug, Clone, Default)]
pub struct AttentionMask {
    /// Causal attention with the queries the last of the keys: query `i` sees key `j` iff
    /// `j <= i + offset` (`offset = keys - queries`).
    pub causal_offset: Option<usize>,
    /// Key padding, `[batch, keys]` row-major, non-zero = keep.
    pub padding: Option<Arc<Vec<u8>>>,
}

/// q: [batch, heads, q_len, d]; k, v: [batch, kv_heads, k_len, d] (heads a multiple of
/// kv_heads; query head h reads KV head h / (heads / kv_heads)) -> [batch, q_len, heads * d]
pub fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    scale: f64,
    mask: &AttentionMask,
) -> candle_core::Result<Tensor> {
    let (b, h, _, d) = q.dims4()?;
    let (bk, kvh, tk, dk) = k.dims4()?;
    if bk != b || dk != d || k.dims() != v.dims() || kvh == 0 || h % kvh != 0 {
        return Err(candle_core::Error::Msg(format!(
            "attention: q {:?} with k {:?} and v {:?}",
            q.dims(),
            k.dims(),
            v.dims()
        )));
    }
    if mask.padding.as_ref().is_some_and(|p| p.len() != b * tk) {
        return Err(candle_core::Error::Msg(format!(
            "attention: padding mask for {b} x {tk} keys"
        )));
    }
    let op = Sdpa { scale, mask: mask.clone(), probs: Mutex::new(None) };
    q.contiguous()?.apply_op3(&k.contiguous()?, &v.contiguous()?, op)
}

struct Sdpa {
    scale: f64,
    mask: AttentionMask,
    /// The forward pass's probabilities `[b, h, tq, tk]`, taken by the backward pass.
    probs: Mutex<Option<CpuStorage>>,
}

/// The sizes of one call.
#[derive(Clone, Copy)]
struct Dims {
    b: usize,
    h: usize,
    kvh: usize,
    tq: usize,
    tk: usize,
    d: usize,
}

impl Dims {
    fn of(lq: &Layout, lk: &Layout) -> candle_core::Result<Self> {
        let (b, h, tq, d) = lq.shape().dims4()?;
        let (_, kvh, tk, _) = lk.shape().dims4()?;
        Ok(Self { b, h, kvh, tq, tk, d })
    }

    fn rep(&self) -> usize {
        self.h / self.kvh
    }
}

/// `y += a * x`.
fn axpy<T: Float>(y: &mut [T], a: T, x: &[T]) {
    for (o, &v) in y.iter_mut().zip(x) {
        *o += a * v;
    }
}

/// The keys query `i` of batch row `batch` may see end before this index (causal mask).
fn key_end(mask: &AttentionMask, i: usize, tk: usize) -> usize {
    mask.causal_offset.map_or(tk, |o| (i + o + 1).min(tk))
}

/// Whether query `i` of batch row `batch` sees at least one key.
fn sees_a_key(mask: &AttentionMask, (batch, i): (usize, usize), tk: usize) -> bool {
    let end = key_end(mask, i, tk);
    mask.padding
        .as_ref()
        .map_or(end > 0, |p| p[batch * tk..batch * tk + end].iter().any(|&v| v != 0))
}

/// Row `i`'s probabilities over the keys of one head into `p` (`p[j] = 0` where masked;
/// uniform when the query sees no key, as the composed path's most-negative fill gives).
fn probs<T: Float>(
    qi: &[T],
    k: &[T],
    (batch, i): (usize, usize),
    dims: Dims,
    scale: T,
    mask: &AttentionMask,
    p: &mut [T],
) {
    let (tk, d) = (dims.tk, dims.d);
    let end = key_end(mask, i, tk);
    let pad = mask.padding.as_ref().map(|p| &p[batch * tk..(batch + 1) * tk]);
    p.fill(T::neg_infinity());
    for j in 0..end {
        if pad.is_none_or(|m| m[j] != 0) {
            p[j] = dot(qi, &k[j * d..(j + 1) * d]) * scale;
        }
    }
    let max = p[..end].iter().fold(T::neg_infinity(), |m, &v| num_traits::Float::max(m, v));
    if max == T::neg_infinity() {
        p.fill(T::one() / T::from(tk.max(1)).unwrap_or_else(T::one));
        return;
    }
    // Masked scores are -inf and come out 0.
    p.iter_mut().for_each(|v| *v = (*v - max).exp_fast());
    let inv = T::one() / sum(p);
    p.iter_mut().for_each(|v| *v *= inv);
}

fn forward<T: Float>(
    (q, lq): (&CpuStorage, &Layout),
    (k, lk): (&CpuStorage, &Layout),
    (v, lv): (&CpuStorage, &Layout),
    op: &Sdpa,
) -> candle_core::Result<(CpuStorage, Shape)> {
    let (q, k, v) = (slice::<T>(q, lq)?, slice::<T>(k, lk)?, slice::<T>(v, lv)?);
    let dims = Dims::of(lq, lk)?;
    let Dims { b, h, tq, tk, d, .. } = dims;
    let scale = T::from(op.scale).unwrap_or_else(T::nan);
    // Per (batch, head) into [b, h, tq, d], then gathered into [b, tq, h * d].
    let mut heads = zeros::<T>(q.len());
    let mut all_probs = zeros::<T>(b * h * tq * tk);
    let tasks = heads.par_chunks_mut(tq * d).zip(all_probs.par_chunks_mut(tq * tk));
    tasks.enumerate().for_each(|(bh, (out, p))| {
        let (batch, head) = (bh / h, bh % h);
        let kv = (batch * dims.kvh + head / dims.rep()) * tk * d;
        let (kh, vh) = (&k[kv..kv + tk * d], &v[kv..kv + tk * d]);
        for i in 0..tq {
            let qi = &q[(bh * tq + i) * d..(bh * tq + i + 1) * d];
            let p = &mut p[i * tk..(i + 1) * tk];
            probs(qi, kh, (batch, i), dims, scale, &op.mask, p);
            let oi = &mut out[i * d..(i + 1) * d];
            for (j, &pj) in p.iter().enumerate() {
                if pj != T::zero() {
                    axpy(oi, pj, &vh[j * d..(j + 1) * d]);
                }
            }
        }
    });
    if let Ok(mut kept) = op.probs.lock() {
        *kept = Some(T::to_cpu_storage_owned(all_probs));
    }
    let mut out = zeros::<T>(q.len());
    out.par_chunks_mut(h * d).enumerate().for_each(|(bt, row)| {
        let (batch, i) = (bt / tq, bt % tq);
        for (head, dst) in row.chunks_exact_mut(d).enumerate() {
            let src = ((batch * h + head) * tq + i) * d;
            dst.copy_from_slice(&heads[src..src + d]);
        }
    });
    Ok((T::to_cpu_storage_owned(out), Shape::from((b, tq, h * d))))
}

impl CustomOp3 for Sdpa {
    fn name(&self) -> &'static str {
        "braid-attention"
    }

    fn cpu_fwd(
        &self,
        q: &CpuStorage,
        lq: &Layout,
        k: &CpuStorage,
        lk: &Layout,
        v: &CpuStorage,
        lv: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        dispatch!(q, forward((q, lq), (k, lk), (v, lv), self))
    }

    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        _out: &Tensor,
        g: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        // One buffer [dq | dk | dv], split by views.
        let probs = self.probs.lock().ok().and_then(|mut p| p.take());
        let grad = SdpaGrad { fwd: self, g: g.contiguous()?, probs };
        let grads = q.apply_op3_no_bwd(k, v, &grad)?;
        let (nq, nk) = (q.elem_count(), k.elem_count());
        let dq = grads.narrow(0, 0, nq)?.reshape(q.shape())?;
        let dk = grads.narrow(0, nq, nk)?.reshape(k.shape())?;
        let dv = grads.narrow(0, nq + nk, nk)?.reshape(v.shape())?;
        let keep = |t: &Tensor, d: Tensor| t.track_op().then_some(d);
        Ok((keep(q, dq), keep(k, dk), keep(v, dv)))
    }
}

/// The backward pass as a forward-only op on (q, k, v), holding the output's gradient.
struct SdpaGrad<'a> {
    fwd: &'a Sdpa,
    g: Tensor,
    /// The forward pass's probabilities, if still there.
    probs: Option<CpuStorage>,
}

fn backward<T: Float>(
    (q, lq): (&CpuStorage, &Layout),
    (k, lk): (&CpuStorage, &Layout),
    (v, lv): (&CpuStorage, &Layout),
    op: &SdpaGrad,
) -> candle_core::Result<(CpuStorage, Shape)> {
    let (q, k, v) = (slice::<T>(q, lq)?, slice::<T>(k, lk)?, slice::<T>(v, lv)?);
    let (gs, gl) = op.g.storage_and_layout();
    let candle_core::Storage::Cpu(gs) = &*gs else {
        return Err(candle_core::Error::Msg("attention backward: gradient not on the CPU".into()));
    };
    let g = slice::<T>(gs, gl)?;
    let dims = Dims::of(lq, lk)?;
    let Dims { h, tq, tk, d, .. } = dims;
    let (rep, mask) = (dims.rep(), &op.fwd.mask);
    let scale = T::from(op.fwd.scale).unwrap_or_else(T::nan);
    let mut out = zeros::<T>(q.len() + 2 * k.len());
    let (dq, dkv) = out.split_at_mut(q.len());
    let (dk, dv) = dkv.split_at_mut(k.len());
    let kept = op.probs.as_ref().map(|p| p.as_slice::<T>()).transpose()?;
    let groups = dq.par_chunks_mut(rep * tq * d).zip(dk.par_chunks_mut(tk * d));
    groups.zip(dv.par_chunks_mut(tk * d)).enumerate().for_each(|(bg, ((dq, dk), dv))| {
        let batch = bg / dims.kvh;
        let kv = bg * tk * d;
        let (kh, vh) = (&k[kv..kv + tk * d], &v[kv..kv + tk * d]);
        let (mut scratch, mut dp) = (zeros::<T>(tk), zeros::<T>(tk));
        for r in 0..rep {
            let head = (bg % dims.kvh) * rep + r;
            let bh = batch * h + head;
            for i in 0..tq {
                let qi = &q[(bh * tq + i) * d..(bh * tq + i + 1) * d];
                let gi = &g[(batch * tq + i) * h * d + head * d..][..d];
                let p = match kept {
                    Some(all) => &all[(bh * tq + i) * tk..(bh * tq + i + 1) * tk],
                    None => {
                        probs(qi, kh, (batch, i), dims, scale, mask, &mut scratch);
                        &scratch[..]
                    }
                };
                let mut total = T::zero();
                for j in 0..tk {
                    if p[j] != T::zero() {
                        axpy(&mut dv[j * d..(j + 1) * d], p[j], gi);
                        dp[j] = dot(gi, &vh[j * d..(j + 1) * d]);
                        total += p[j] * dp[j];
                    }
                }
                if !sees_a_key(mask, (batch, i), tk) {
                    continue;
                }
                let dqi = &mut dq[(r * tq + i) * d..(r * tq + i + 1) * d];
                for j in 0..tk {
                    if p[j] != T::zero() {
                        let ds = scale * p[j] * (dp[j] - total);
                        axpy(dqi, ds, &kh[j * d..(j + 1) * d]);
                        axpy(&mut dk[j * d..(j + 1) * d], ds, qi);
                    }
                }
            }
        }
    });
    Ok((T::to_cpu_storage_owned(out), Shape::from(q.len() + 2 * k.len())))
}

impl CustomOp3 for SdpaGrad<'_> {
    fn name(&self) -> &'static str {
        "braid-attention-grad"
    }

    fn cpu_fwd(
        &self,
        q: &CpuStorage,
        lq: &Layout,
        k: &CpuStorage,
        lk: &Layout,
        v: &CpuStorage,
        lv: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        dispatch!(q, backward((q, lq), (k, lk), (v, lv), self))
    }
}

#[cfg(test)]
mod tests {
    use braid_core::Result;
    use candle_core::{DType, Device, Tensor, D};

    use super::*;
    use crate::attention::mask;
    use crate::fused::testing::assert_same;
    use crate::softmax;

    /// The composed path: repeated KV heads, scaled scores, the keep-mask, softmax, values.
    fn composed(ts: &[Tensor], causal: bool, pad: Option<&Tensor>) -> Result<Tensor> {
        let (q, k, v) = (&ts[0], &ts[1], &ts[2]);
        let (b, h, tq, d) = q.dims4()?;
        let (_, kvh, tk, _) = k.dims4()?;
        let rep = |x: &Tensor| -> Result<Tensor> {
            Ok(x.unsqueeze(2)?.broadcast_as((b, kvh, h / kvh, tk, d))?.reshape((b, h, tk, d))?)
        };
        let mut s = (q.matmul(&rep(k)?.t()?)? * 0.25)?;
        if let Some(keep) = mask::keep_mask(causal, pad, tq, tk, q.device())? {
            s = mask::apply(&s, &keep)?;
        }
        let o = softmax(&s, D::Minus1)?.matmul(&rep(v)?)?;
        Ok(o.transpose(1, 2)?.reshape((b, tq, h * d))?)
    }

    #[test]
    fn same_values_and_gradients_as_composed_ops() -> Result<()> {
        let dev = Device::Cpu;
        // Row 1 pads its last two keys; row 2 pads every key (its queries see nothing).
        let pad = Tensor::new(&[[1u8, 1, 1, 1, 1], [1, 1, 1, 0, 0], [0, 0, 0, 0, 0]], &dev)?;
        let pad_vec = Arc::new(pad.flatten_all()?.to_vec1::<u8>()?);
        for dtype in [DType::F64, DType::F32] {
            // 6 query heads on 2 KV heads, 3 queries over 5 keys, head width 10 (not a
            // multiple of the dot product's 8 lanes).
            let q = Tensor::randn(0f64, 1., (3, 6, 3, 10), &dev)?.to_dtype(dtype)?;
            let k = Tensor::randn(0f64, 1., (3, 2, 5, 10), &dev)?.to_dtype(dtype)?;
            let v = Tensor::randn(0f64, 1., (3, 2, 5, 10), &dev)?.to_dtype(dtype)?;
            let tol = if dtype == DType::F64 { 1e-12 } else { 1e-5 };
            for (causal, padded) in [(false, false), (true, false), (false, true), (true, true)] {
                let m = AttentionMask {
                    causal_offset: causal.then_some(2),
                    padding: padded.then(|| pad_vec.clone()),
                };
                let p = padded.then_some(&pad);
                assert_same(
                    |ts| Ok(attention(&ts[0], &ts[1], &ts[2], 0.25, &m)?),
                    |ts| composed(ts, causal, p),
                    &[q.clone(), k.clone(), v.clone()],
                    tol,
                )?;
            }
        }
        Ok(())
    }

    #[test]
    fn a_second_backward_recomputes_the_probabilities() -> Result<()> {
        let dev = Device::Cpu;
        let var = |shape: (usize, usize, usize, usize)| -> Result<candle_core::Var> {
            Ok(candle_core::Var::from_tensor(&Tensor::randn(0f64, 1., shape, &dev)?)?)
        };
        let (q, k, v) = (var((2, 4, 3, 8))?, var((2, 2, 3, 8))?, var((2, 2, 3, 8))?);
        let m = AttentionMask { causal_offset: Some(0), padding: None };
        let y = attention(q.as_tensor(), k.as_tensor(), v.as_tensor(), 0.3, &m)?;
        let loss = (y.sqr()?.sum_all()? * 0.5)?;
        let (first, second) = (loss.backward()?, loss.backward()?);
        for t in [q.as_tensor(), k.as_tensor(), v.as_tensor()] {
            let (a, b) = (first.get(t), second.get(t));
            let (Some(a), Some(b)) = (a, b) else {
                return Err(braid_core::Error::Invalid("a gradient is missing".into()));
            };
            assert!(crate::fused::testing::rel_diff(a, b)? < 1e-14);
        }
        Ok(())
    }
}
