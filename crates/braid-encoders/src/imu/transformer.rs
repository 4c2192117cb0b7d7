//! The transformer behind Braid's from-scratch patch encoders (IMU patches here, audio
//! spectrogram patches in `audio`): an optional class token, learned positions, pre-norm
//! blocks in CLIP's layout and a final LayerNorm, as ViT (Dosovitskiy et al. 2021), AST
//! (Gong et al. 2021) and OneLLM's modality tokenizers (Han et al. 2024) use.
//! Reference: `transformers.models.clip.modeling_clip.CLIPEncoder`.

use braid_core::{Error, Result};
use braid_nn::{
    Activation, AttentionConfig, BlockConfig, BlockNames, LayerNorm, MlpConfig, NormConfig,
    PreNormBlock,
};
use candle_core::{Tensor, D};
use candle_nn::{Init, VarBuilder};
use serde::{Deserialize, Serialize};

/// Widths and depth of a [`TokenTransformer`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TokenTransformerConfig {
    /// Token width D.
    pub hidden_size: usize,
    /// MLP inner width.
    pub intermediate_size: usize,
    /// Blocks.
    pub num_layers: usize,
    /// Attention heads.
    pub num_heads: usize,
    /// Most tokens (class token included) the position table holds.
    pub max_positions: usize,
    /// Prepend a learned class token.
    pub class_token: bool,
    /// MLP activation.
    pub activation: Activation,
    /// LayerNorm epsilon.
    pub layer_norm_eps: f64,
    /// Multimodal Pathway: every attention and MLP linear is `W + λ W_aux`, with W_aux
    /// (`layers.N.….pathway.weight`, from a transformer of the same widths trained on
    /// another modality) and λ (`….pathway.scale`, starting at 0) beside its weight;
    /// [`TokenTransformer::merge_pathway`] folds them back into plain weights.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub pathway: bool,
}

impl Default for TokenTransformerConfig {
    fn default() -> Self {
        Self {
            hidden_size: 256,
            intermediate_size: 1024,
            num_layers: 4,
            num_heads: 4,
            max_positions: 512,
            class_token: true,
            activation: Activation::Gelu,
            layer_norm_eps: 1e-5,
            pathway: false,
        }
    }
}

/// Class token + positions + pre-norm blocks + final norm. Variables: `class_embedding [D]`,
/// `position_embedding [max_positions, D]`, `layers.N.*`, `norm.{weight,bias}`.
#[derive(Debug, Clone)]
pub struct TokenTransformer {
    class_embedding: Option<Tensor>,
    positions: Tensor,
    layers: Vec<PreNormBlock>,
    norm: LayerNorm,
    cfg: TokenTransformerConfig,
}

impl TokenTransformer {
    /// Builds under `vb` (positions and class token start at N(0, 0.02)).
    pub fn new(cfg: TokenTransformerConfig, vb: VarBuilder) -> Result<Self> {
        let d = cfg.hidden_size;
        let normal = Init::Randn { mean: 0.0, stdev: 0.02 };
        let class_embedding = match cfg.class_token {
            true => Some(vb.get_with_hints(d, "class_embedding", normal)?),
            false => None,
        };
        let block = BlockConfig {
            attention: AttentionConfig::new(d, cfg.num_heads),
            mlp: MlpConfig {
                hidden: d,
                intermediate: cfg.intermediate_size,
                activation: cfg.activation,
                gated: false,
                bias: true,
            },
            norm: NormConfig { eps: cfg.layer_norm_eps, ..NormConfig::default() },
        };
        let mut layers = (0..cfg.num_layers)
            .map(|i| PreNormBlock::new(block, BlockNames::CLIP, vb.pp(format!("layers.{i}"))))
            .collect::<Result<Vec<_>>>()?;
        if cfg.pathway {
            for (i, layer) in layers.iter_mut().enumerate() {
                for (path, proj) in layer.projections_mut() {
                    *proj = proj.with_pathway(vb.pp(format!("layers.{i}.{path}")))?;
                }
            }
        }
        Ok(Self {
            class_embedding,
            positions: vb.get_with_hints((cfg.max_positions, d), "position_embedding", normal)?,
            layers,
            norm: LayerNorm::new(d, cfg.layer_norm_eps, vb.pp("norm"))?,
            cfg,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &TokenTransformerConfig {
        &self.cfg
    }

    /// The names (below this transformer) of every pathway linear's weight, with its
    /// effective weight `W + λ W_aux` (detached): what merging writes into `….weight`.
    /// Empty without a pathway.
    pub fn pathway_merged(&mut self) -> Result<Vec<(String, Tensor)>> {
        let mut out = Vec::new();
        for (i, layer) in self.layers.iter_mut().enumerate() {
            for (path, proj) in layer.projections_mut() {
                if let braid_nn::Proj::Pathway(p) = proj {
                    out.push((format!("layers.{i}.{path}.weight"), p.weight()?.detach()));
                }
            }
        }
        Ok(out)
    }

    /// x: [batch, n, D]; mask: [batch, n] of 1/0 ->
    /// ([batch, n (+1 with a class token first), D], mask of the same length)
    pub fn forward(&self, x: &Tensor, mask: Option<&Tensor>) -> Result<(Tensor, Option<Tensor>)> {
        let (b, n, d) = x.dims3()?;
        let (mut h, mut mask) = (x.clone(), mask.cloned());
        if let Some(cls) = &self.class_embedding {
            h = Tensor::cat(
                &[&cls.reshape((1, 1, d))?.broadcast_as((b, 1, d))?.to_dtype(x.dtype())?, &h],
                1,
            )?;
            if let Some(m) = &mask {
                mask = Some(Tensor::cat(&[&Tensor::ones((b, 1), m.dtype(), m.device())?, m], 1)?);
            }
        }
        let len = h.dim(1)?;
        if len > self.cfg.max_positions {
            let msg =
                format!("{n} tokens (+ class token) exceed {} positions", self.cfg.max_positions);
            return Err(Error::config("max_positions", msg));
        }
        h = h.broadcast_add(&self.positions.narrow(0, 0, len)?.to_dtype(x.dtype())?)?;
        for layer in &self.layers {
            h = layer.forward(&h, mask.as_ref(), None)?;
        }
        Ok((self.norm.forward(&h)?, mask))
    }
}

/// Which tokens are real: token `j` covers samples
/// `j * stride .. j * stride + kernel` (clamped) and is real when they all are.
///
/// mask: [batch, time] -> [batch, tokens]
pub(crate) fn token_mask(
    mask: &Tensor,
    tokens: usize,
    kernel: usize,
    stride: usize,
) -> Result<Tensor> {
    let t = mask.dim(D::Minus1)?;
    let rows = mask.to_dtype(candle_core::DType::F32)?.to_vec2::<f32>()?;
    let out: Vec<f32> = rows
        .iter()
        .flat_map(|row| {
            (0..tokens).map(move |j| {
                let (a, e) = ((j * stride).min(t), (j * stride + kernel).min(t));
                if row[a..e].iter().all(|&v| v > 0.0) && a < e {
                    1.0
                } else {
                    0.0
                }
            })
        })
        .collect();
    Ok(Tensor::from_vec(out, (rows.len(), tokens), mask.device())?.to_dtype(mask.dtype())?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    #[test]
    fn token_mask_marks_fully_real_patches() -> Result<()> {
        let m = Tensor::new(&[[1f32, 1., 1., 1., 1., 0.]], &Device::Cpu)?;
        assert_eq!(token_mask(&m, 3, 2, 2)?.to_vec2::<f32>()?, [[1., 1., 0.]]);
        Ok(())
    }

    #[test]
    fn too_many_tokens_is_a_config_error() -> Result<()> {
        let vm = candle_nn::VarMap::new();
        let cfg = TokenTransformerConfig {
            hidden_size: 8,
            intermediate_size: 16,
            num_layers: 1,
            num_heads: 2,
            max_positions: 4,
            ..Default::default()
        };
        let t = TokenTransformer::new(cfg, VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu))?;
        let (y, m) = t.forward(
            &Tensor::zeros((2, 3, 8), DType::F32, &Device::Cpu)?,
            Some(&Tensor::ones((2, 3), DType::F32, &Device::Cpu)?),
        )?;
        assert_eq!((y.dims(), m.map(|m| m.dims().to_vec())), (&[2, 4, 8][..], Some(vec![2, 4])));
        assert!(t.forward(&Tensor::zeros((1, 4, 8), DType::F32, &Device::Cpu)?, None).is_err());
        Ok(())
    }
}
