//! [`ImageTower`]: a ViT read out at a chosen hidden layer, optionally without the class
//! token, its patch grid optionally average-pooled (LLaVA-1.5 reads layer -2 without the
//! class token; LLaVA-OneVision and MobileVLM pool the grid for fewer image tokens).

use braid_core::{Error, Features, Modality, Result};
use candle_core::Tensor;

use super::Vit;
use crate::Encoder;

/// A ViT read out at its feature layer, optionally without the class token, its patch
/// grid optionally average-pooled.
#[derive(Debug, Clone)]
pub struct ImageTower {
    /// The ViT, set to its feature layer.
    pub vit: Vit,
    /// Drop the class token.
    pub drop_cls: bool,
    /// Average `pool` x `pool` windows of the patch grid (1: every patch).
    pub pool: usize,
}

/// patches: [batch, g*g, D] (row-major grid) -> [batch, (g/k)^2, D], the mean of each k x k
/// window.
fn pool_grid(patches: &Tensor, k: usize) -> Result<Tensor> {
    let (b, n, d) = patches.dims3()?;
    let g = (n as f64).sqrt().round() as usize;
    if g * g != n || k == 0 || g % k != 0 {
        return Err(Error::shape(
            "patch grid to pool (a square grid divisible by pool)",
            &[b, g * g, d],
            patches.dims(),
        ));
    }
    let m = g / k;
    Ok(patches.reshape((b, m, k, m, k, d))?.mean(4)?.mean(2)?.reshape((b, m * m, d))?)
}

impl Encoder for ImageTower {
    fn modality(&self) -> Modality {
        Modality::Image
    }

    fn output_dim(&self) -> usize {
        self.vit.output_dim()
    }

    /// pixels: [batch, C, H, W] -> [batch, n / pool^2 (+ 1 with the class token), D]
    fn encode(&self, input: &Tensor, mask: Option<&Tensor>) -> Result<Features> {
        let f = self.vit.encode(input, mask)?;
        if self.drop_cls && self.pool == 1 {
            let n = f.tokens.dim(1)?;
            return Features::new(f.tokens.narrow(1, 1, n - 1)?, None);
        }
        if self.pool == 1 {
            return Ok(f);
        }
        let n = f.tokens.dim(1)?;
        let patches = pool_grid(&f.tokens.narrow(1, 1, n - 1)?, self.pool)?;
        if self.drop_cls {
            return Features::new(patches, None);
        }
        Features::new(Tensor::cat(&[&f.tokens.narrow(1, 0, 1)?, &patches], 1)?, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn pooling_averages_each_window_of_the_row_major_grid() -> Result<()> {
        // A 4x4 grid whose token (r, c) holds [r, c]: the 2x2 windows average to
        // (0.5|2.5, 0.5|2.5) in row-major order.
        let vals: Vec<f32> =
            (0..4).flat_map(|r| (0..4).flat_map(move |c| [r as f32, c as f32])).collect();
        let grid = Tensor::from_vec(vals, (1, 16, 2), &Device::Cpu)?;
        let pooled = pool_grid(&grid, 2)?.squeeze(0)?.to_vec2::<f32>()?;
        assert_eq!(pooled, vec![vec![0.5, 0.5], vec![0.5, 2.5], vec![2.5, 0.5], vec![2.5, 2.5]]);
        assert_eq!(pool_grid(&grid, 4)?.dims(), &[1, 1, 2]);
        assert!(pool_grid(&grid, 3).is_err());
        Ok(())
    }
}
