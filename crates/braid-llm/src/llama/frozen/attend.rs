//! Scaled dot-product attention over query rows in bounded chunks: a long prompt (8192
//! tokens, `--truncate` of a 100k-character prompt) would otherwise hold its whole
//! `rows x keys` score matrix, and the softmax of it, at once (gigabytes). Softmax is per
//! row, so attending a chunk of rows at a time gives the same output; a prompt whose
//! scores fit [`MAX_SCORES`] takes the single-chunk path unchanged.

use braid_core::Result;
use candle_core::Tensor;
use candle_nn::ops::softmax_last_dim;

/// Most attention scores held at once (f32 elements: 64 MiB), summed over batch and KV
/// heads.
pub(super) const MAX_SCORES: usize = 1 << 24;

/// q: [b, kv_heads, rows, d]; k, v: [b, kv_heads, keys, d]; bias: [b or 1, 1, rows or 1,
/// keys] added to the scores -> [b, kv_heads, rows, d], `softmax(q k^T * scale + bias) v`
/// computed `max_scores / (b * kv_heads * keys)` rows at a time.
pub(super) fn attend(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    bias: Option<&Tensor>,
    scale: f64,
    max_scores: usize,
) -> Result<Tensor> {
    let (b, kv_heads, rows, _) = q.dims4()?;
    let keys = k.dim(2)?;
    let kt = k.t()?;
    let chunk = (max_scores / (b * kv_heads * keys).max(1)).max(1);
    if chunk >= rows {
        return rows_attend(q, &kt, v, bias, scale);
    }
    let mut outs = Vec::with_capacity(rows.div_ceil(chunk));
    for start in (0..rows).step_by(chunk) {
        let n = chunk.min(rows - start);
        let qc = q.narrow(2, start, n)?.contiguous()?;
        let bc = match bias {
            Some(m) if m.dim(2)? > 1 => Some(m.narrow(2, start, n)?),
            other => other.cloned(),
        };
        outs.push(rows_attend(&qc, &kt, v, bc.as_ref(), scale)?);
    }
    Ok(Tensor::cat(&outs, 2)?)
}

/// One chunk: q [b, kv_heads, n, d], kt [b, kv_heads, d, keys] -> [b, kv_heads, n, d]
fn rows_attend(
    q: &Tensor,
    kt: &Tensor,
    v: &Tensor,
    bias: Option<&Tensor>,
    scale: f64,
) -> Result<Tensor> {
    let scores = (q.matmul(kt)? * scale)?;
    let scores = match bias {
        Some(m) => scores.broadcast_add(m)?,
        None => scores,
    };
    Ok(softmax_last_dim(&scores)?.matmul(v)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    #[test]
    fn alloc_long_prompt_attention_chunked_equals_whole() -> Result<()> {
        let dev = Device::Cpu;
        let (b, kv, rows, keys, d) = (2, 3, 37, 29, 8);
        let q = Tensor::randn(0f32, 1.0, (b, kv, rows, d), &dev)?;
        let k = Tensor::randn(0f32, 1.0, (b, kv, keys, d), &dev)?;
        let v = Tensor::randn(0f32, 1.0, (b, kv, keys, d), &dev)?;
        // A causal-like bias with masked entries, one per batch row.
        let bias =
            (Tensor::randn(0f32, 1.0, (b, 1, rows, keys), &dev)?.ge(1.0)?.to_dtype(DType::F32)?
                * -1e9)?;
        let scale = 1.0 / (d as f64).sqrt();
        let whole = attend(&q, &k, &v, Some(&bias), scale, usize::MAX)?;
        // 1 row, 5 rows (a ragged last chunk) and 36 rows at a time.
        for limit in [1, 5 * b * kv * keys, 36 * b * kv * keys] {
            let chunked = attend(&q, &k, &v, Some(&bias), scale, limit)?;
            let diff = (&chunked - &whole)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
            assert!(diff <= 1e-6, "limit {limit}: max abs diff {diff}");
        }
        // A bias broadcast over rows, and none.
        let row_bias = bias.narrow(2, 0, 1)?;
        let whole = attend(&q, &k, &v, Some(&row_bias), scale, usize::MAX)?;
        let chunked = attend(&q, &k, &v, Some(&row_bias), scale, 7 * b * kv * keys)?;
        assert!((&chunked - &whole)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()? <= 1e-6);
        let whole = attend(&q, &k, &v, None, scale, usize::MAX)?;
        let chunked = attend(&q, &k, &v, None, scale, 1)?;
        assert!((&chunked - &whole)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()? <= 1e-6);
        Ok(())
    }
}
