//! Token embedding table.

use braid_core::Result;
use candle_core::{Module, Tensor};
use candle_nn::{Init, VarBuilder};

/// A lookup table `[vocab, dim]` ("weight"); the gradient reaches the rows looked up.
#[derive(Debug, Clone)]
pub struct Embedding {
    weight: Tensor,
}

impl Embedding {
    /// Builds from `vb`; a missing table starts as N(0, 1) like PyTorch's `nn.Embedding`.
    pub fn new(vocab: usize, dim: usize, vb: VarBuilder) -> Result<Self> {
        let weight =
            vb.get_with_hints((vocab, dim), "weight", Init::Randn { mean: 0., stdev: 1. })?;
        Ok(Self { weight })
    }

    /// Wraps an existing table `[vocab, dim]`.
    pub fn from_weights(weight: Tensor) -> Result<Self> {
        weight.dims2()?;
        Ok(Self { weight })
    }

    /// The table, `[vocab, dim]` (tied LM heads reuse it).
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// ids: [..any] integer -> [..any, dim]
    pub fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        let mut dims = ids.dims().to_vec();
        let rows = self.weight.index_select(&ids.flatten_all()?, 0)?;
        dims.push(self.weight.dim(1)?);
        Ok(rows.reshape(dims)?)
    }
}

impl Module for Embedding {
    /// ids: [..any] integer -> [..any, dim]
    fn forward(&self, ids: &Tensor) -> candle_core::Result<Tensor> {
        Embedding::forward(self, ids).map_err(candle_core::Error::wrap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;
    use crate::gradcheck::finite_difference_check;
    use candle_core::Device;

    #[test]
    fn matches_pytorch() -> Result<()> {
        let f = fixtures::load("embedding")?;
        let emb = Embedding::new(10, 4, f.vb().pp("emb"))?;
        fixtures::check(&emb.forward(&f.get("ids")?)?, &f.get("y")?, "embedding")?;
        f.assert_all_used()
    }

    #[test]
    fn gradients_match_finite_differences() -> Result<()> {
        let dev = Device::Cpu;
        let ids = Tensor::new(&[[1u32, 3, 3], [0, 4, 1]], &dev)?;
        let w = Tensor::randn(0f64, 1., (5, 3), &dev)?;
        finite_difference_check(
            |w| Embedding::from_weights(w.clone())?.forward(&ids),
            &w,
            1e-6,
            1e-6,
        )
    }
}
