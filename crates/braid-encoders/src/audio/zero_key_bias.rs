//! Whisper's `k_proj` has no bias while its `q_proj` and `v_proj` do. `braid_nn::Attention`
//! takes one bias switch for q, k and v, so the key bias is supplied as a constant zero
//! (not a variable, not read from the checkpoint): the same function, since a bias on the
//! keys only adds a per-query constant to the scores, which softmax ignores.

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder};

/// The name the wrapper answers with zeros, relative to a Whisper layer.
const KEY_BIAS: &str = "self_attn.k_proj.bias";

struct ZeroKeyBias<'a>(VarBuilder<'a>);

impl SimpleBackend for ZeroKeyBias<'_> {
    fn get(
        &self,
        s: Shape,
        name: &str,
        h: Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        if name == KEY_BIAS {
            return Tensor::zeros(s, dtype, dev);
        }
        self.0.get_with_hints_dtype(s, name, h, dtype)
    }

    fn get_unchecked(
        &self,
        name: &str,
        dtype: DType,
        _dev: &Device,
    ) -> candle_core::Result<Tensor> {
        self.0.get_unchecked_dtype(name, dtype)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        name == KEY_BIAS || self.0.contains_tensor(name)
    }
}

/// `vb` for one Whisper layer, with `self_attn.k_proj.bias` answered by zeros.
pub(crate) fn without_key_bias(vb: VarBuilder) -> VarBuilder {
    let (dtype, device) = (vb.dtype(), vb.device().clone());
    VarBuilder::from_backend(Box::new(ZeroKeyBias(vb)), dtype, device)
}
