//! Resampling a grid of position embeddings to another grid, as PyTorch's
//! `F.interpolate(mode="bicubic", align_corners=False)` (Keys cubic, A = -0.75, edge
//! indices clamped), so a ViT trained at one resolution reads another (Dosovitskiy et al.
//! 2021, section 3.2). Written as two matrix products, which keeps it differentiable.
//! Reference: `transformers.models.clip.modeling_clip.CLIPVisionEmbeddings.
//! interpolate_pos_encoding`; PyTorch `aten/src/ATen/native/UpSample.h`.

use braid_core::Result;
use candle_core::{Device, Tensor};

const A: f64 = -0.75;

fn cubic1(x: f64) -> f64 {
    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
}

fn cubic2(x: f64) -> f64 {
    ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A
}

/// The `[out, in]` matrix of 1-D bicubic interpolation from `n_in` to `n_out` samples.
pub fn bicubic_matrix(n_in: usize, n_out: usize, device: &Device) -> Result<Tensor> {
    let scale = n_in as f64 / n_out as f64;
    let mut m = vec![0f32; n_out * n_in];
    for o in 0..n_out {
        let real = scale * (o as f64 + 0.5) - 0.5;
        let base = real.floor();
        let t = real - base;
        let w = [cubic2(t + 1.0), cubic1(t), cubic1(1.0 - t), cubic2(2.0 - t)];
        for (k, wk) in w.iter().enumerate() {
            let idx = (base as i64 - 1 + k as i64).clamp(0, n_in as i64 - 1) as usize;
            m[o * n_in + idx] += *wk as f32;
        }
    }
    Ok(Tensor::from_vec(m, (n_out, n_in), device)?)
}

/// grid: [h0, w0, D] -> [h1, w1, D]
pub fn resize_grid(grid: &Tensor, h1: usize, w1: usize) -> Result<Tensor> {
    let (h0, w0, d) = grid.dims3()?;
    if (h0, w0) == (h1, w1) {
        return Ok(grid.clone());
    }
    let mh = bicubic_matrix(h0, h1, grid.device())?;
    let mw = bicubic_matrix(w0, w1, grid.device())?;
    let rows = mh.matmul(&grid.reshape((h0, w0 * d))?)?.reshape((h1, w0, d))?;
    let cols = rows.transpose(0, 1)?.contiguous()?.reshape((w0, h1 * d))?;
    let out = mw.matmul(&cols)?.reshape((w1, h1, d))?.transpose(0, 1)?;
    Ok(out.contiguous()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_size_is_identity_and_rows_sum_to_one() {
        let m = bicubic_matrix(5, 5, &Device::Cpu).unwrap().to_vec2::<f32>().unwrap();
        for (i, row) in m.iter().enumerate() {
            assert!((row[i] - 1.0).abs() < 1e-6 && (row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        }
        let m = bicubic_matrix(5, 7, &Device::Cpu).unwrap().to_vec2::<f32>().unwrap();
        assert!(m.iter().all(|r| (r.iter().sum::<f32>() - 1.0).abs() < 1e-5));
    }

    #[test]
    fn constant_grid_stays_constant() {
        let g = Tensor::ones((4, 4, 3), candle_core::DType::F32, &Device::Cpu).unwrap();
        let out = resize_grid(&g, 7, 6).unwrap();
        assert_eq!(out.dims(), &[7, 6, 3]);
        let v = out.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(v.iter().all(|x| (x - 1.0).abs() < 1e-5));
    }
}
