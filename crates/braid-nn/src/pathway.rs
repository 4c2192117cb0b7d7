//! Multimodal Pathway (Zhang et al. 2024, arXiv 2401.14405; reference:
//! `AILab-CVC/M2PT`, `CrossModalReparamLinear`): a linear of a transformer of one modality
//! borrows the weight of the same linear in a transformer trained on another modality,
//! `y = x (W + λ W_aux)^T + b`, with one learnable scalar λ per linear, initialised at 0
//! (training starts from the target model), the target's bias only, and the auxiliary
//! weight frozen or trained. After training the two fold into one weight
//! ([`PathwayLinear::merge`]), so inference costs nothing extra.
//!
//! Variables, beside the wrapped linear's `weight` / `bias`: `pathway.weight` (W_aux, the
//! linear's shape) and `pathway.scale` (λ, `[1]`).

use braid_core::Result;
use candle_core::{Module, Tensor};
use candle_nn::{Init, VarBuilder};

use crate::Linear;

/// A [`Linear`] re-parameterised with an auxiliary modality's weight.
#[derive(Debug, Clone)]
pub struct PathwayLinear {
    base: Linear,
    aux: Tensor,
    scale: Tensor,
}

impl PathwayLinear {
    /// Wraps `base`, with W_aux (zeros until filled) and λ = 0 from `vb` (at the linear's
    /// own position: `pathway.weight`, `pathway.scale`).
    pub fn new(base: Linear, vb: VarBuilder) -> Result<Self> {
        let shape = base.weight().shape().clone();
        let aux = vb.get_with_hints(shape, "pathway.weight", Init::Const(0.0))?;
        let scale = vb.get_with_hints(1, "pathway.scale", Init::Const(0.0))?;
        Ok(Self { base, aux, scale })
    }

    /// The target modality's layer.
    pub fn base(&self) -> &Linear {
        &self.base
    }

    /// The effective weight `W + λ W_aux`.
    pub fn weight(&self) -> Result<Tensor> {
        merged_weight(self.base.weight(), &self.aux, &self.scale)
    }

    /// The plain layer with `W + λ W_aux` as its weight (detached): the same outputs,
    /// bit for bit, as [`Self::forward`].
    pub fn merge(&self) -> Result<Linear> {
        Linear::from_weights(self.weight()?.detach(), self.base.bias().map(Tensor::detach))
    }

    /// x: [..., in] -> [..., out]
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let layer = Linear::from_weights(self.weight()?, self.base.bias().cloned())?;
        Ok(layer.forward(x)?)
    }
}

/// `W + λ W_aux` (w, aux: `[out, in]`, scale: `[1]`): the one computation of the effective
/// weight, so that a merged checkpoint holds exactly what the pathway linear multiplies by.
pub fn merged_weight(w: &Tensor, aux: &Tensor, scale: &Tensor) -> Result<Tensor> {
    let update = aux.broadcast_mul(&scale.to_dtype(aux.dtype())?)?;
    Ok((w + update.to_dtype(w.dtype())?)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::check_all_vars_get_grad;
    use candle_core::{DType, Device};
    use candle_nn::VarMap;

    #[test]
    fn starts_as_the_target_merges_bit_for_bit_and_every_variable_learns() -> Result<()> {
        let dev = Device::Cpu;
        let vm = VarMap::new();
        let vb = VarBuilder::from_varmap(&vm, DType::F32, &dev);
        let base = Linear::new(4, 3, true, vb.pp("fc"))?;
        let layer = PathwayLinear::new(base.clone(), vb.pp("fc"))?;
        let x = Tensor::randn(0f32, 1., (2, 5, 4), &dev)?;
        // λ = 0: the target model exactly.
        let diff = (layer.forward(&x)? - base.forward(&x)?)?.abs()?.max_all()?;
        assert_eq!(diff.to_scalar::<f32>()?, 0.0);
        // With an auxiliary weight and λ set, merging keeps the outputs bit for bit.
        let vars = vm.data().lock().map_err(|_| braid_core::Error::Invalid("lock".into()))?.clone();
        vars["fc.pathway.weight"].set(&Tensor::randn(0f32, 1., (3, 4), &dev)?)?;
        vars["fc.pathway.scale"].set(&Tensor::new(&[0.3f32], &dev)?)?;
        let (a, b) = (layer.forward(&x)?, layer.merge()?.forward(&x)?);
        assert_eq!(a.flatten_all()?.to_vec1::<f32>()?, b.flatten_all()?.to_vec1::<f32>()?);
        assert_ne!(
            a.flatten_all()?.to_vec1::<f32>()?,
            base.forward(&x)?.flatten_all()?.to_vec1::<f32>()?
        );
        // λ, the auxiliary weight, the target weight and bias all receive gradient.
        let loss = layer.forward(&x)?.sqr()?.sum_all()?;
        check_all_vars_get_grad(&vm, &loss)
    }
}
