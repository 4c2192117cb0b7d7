//! Part 4 of a multimodal LLM: output projectors from the language model's hidden states
//! at its signal tokens to a generator's condition. NExT-GPT (Wu et al. 2023) `TextFcLayer`
//! (`nextgpt/model/layers.py`): `linear` maps each signal state on its own; `transformer`
//! adds the signal tokens' input embeddings, projects to a width, runs an encoder-decoder
//! transformer (pre-norm, ReLU, a final norm on each stack, as `nn.Transformer(norm_first=
//! True)`) whose decoder reads learned queries, one per condition token, and projects to
//! the generator's width.

use braid_core::{Error, Result};
use braid_nn::{
    Activation, Attention, AttentionConfig, AttentionNames, BlockConfig, BlockNames, LayerNorm,
    Linear, Mlp, MlpConfig, MlpNames, NormConfig, NormKind, PreNormBlock,
};
use candle_core::{Module, Tensor};
use candle_nn::{Init, VarBuilder};
use serde::{Deserialize, Serialize};

use crate::OutputProjector;

/// Which output projector, with its shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum OutputProjectorConfig {
    /// Each signal state through `linear_1`, GELU, `linear_2`: as many condition tokens as
    /// signal tokens.
    Mlp {
        /// Inner width.
        hidden: usize,
    },
    /// NExT-GPT's transformer with learned queries.
    Transformer {
        /// Width inside the transformer (512 in NExT-GPT).
        width: usize,
        /// Attention heads.
        heads: usize,
        /// Encoder layers and decoder layers, each.
        layers: usize,
        /// Condition tokens out (77 for an SD text condition).
        queries: usize,
    },
}

/// Builds the configured projector under `vb`: hidden states of width `in_dim` -> condition
/// tokens of width `out_dim`.
pub fn output_projector(
    cfg: &OutputProjectorConfig,
    in_dim: usize,
    out_dim: usize,
    vb: VarBuilder,
) -> Result<Box<dyn OutputProjector>> {
    Ok(match *cfg {
        OutputProjectorConfig::Mlp { hidden } => {
            Box::new(OutputMlp::new(in_dim, hidden, out_dim, vb)?)
        }
        OutputProjectorConfig::Transformer { width, heads, layers, queries } => {
            Box::new(OutputTransformer::new(in_dim, width, heads, layers, queries, out_dim, vb)?)
        }
    })
}

/// `linear_2(gelu(linear_1(h)))`, token-wise.
#[derive(Debug, Clone)]
pub struct OutputMlp {
    linear_1: Linear,
    linear_2: Linear,
}

impl OutputMlp {
    /// `in_dim -> hidden -> out_dim`.
    pub fn new(in_dim: usize, hidden: usize, out_dim: usize, vb: VarBuilder) -> Result<Self> {
        if hidden == 0 {
            return Err(Error::config("output_projector.hidden", "must be positive"));
        }
        Ok(Self {
            linear_1: Linear::new(in_dim, hidden, true, vb.pp("linear_1"))?,
            linear_2: Linear::new(hidden, out_dim, true, vb.pp("linear_2"))?,
        })
    }
}

impl OutputProjector for OutputMlp {
    fn in_dim(&self) -> usize {
        self.linear_1.in_dim()
    }

    fn out_dim(&self) -> usize {
        self.linear_2.out_dim()
    }

    fn project(&self, hidden: &Tensor) -> Result<Tensor> {
        let h = Activation::Gelu.forward(&self.linear_1.forward(hidden)?)?;
        Ok(self.linear_2.forward(&h)?)
    }
}

/// One decoder layer: self-attention over the queries, cross-attention to the encoded
/// signal states, ReLU MLP; each pre-normed and residual.
#[derive(Debug, Clone)]
struct DecoderLayer {
    norm1: LayerNorm,
    self_attn: Attention,
    norm2: LayerNorm,
    cross_attn: Attention,
    norm3: LayerNorm,
    mlp: Mlp,
}

impl DecoderLayer {
    fn new(width: usize, heads: usize, vb: VarBuilder) -> Result<Self> {
        let attn = AttentionConfig::new(width, heads);
        let mlp = MlpConfig {
            hidden: width,
            intermediate: 4 * width,
            activation: Activation::Relu,
            gated: false,
            bias: true,
        };
        Ok(Self {
            norm1: LayerNorm::new(width, 1e-5, vb.pp("norm1"))?,
            self_attn: Attention::new(attn, AttentionNames::CLIP, vb.pp("self_attn"))?,
            norm2: LayerNorm::new(width, 1e-5, vb.pp("norm2"))?,
            cross_attn: Attention::new(attn, AttentionNames::CLIP, vb.pp("cross_attn"))?,
            norm3: LayerNorm::new(width, 1e-5, vb.pp("norm3"))?,
            mlp: Mlp::new(mlp, MlpNames::CLIP, vb.pp("mlp"))?,
        })
    }

    fn forward(&self, q: &Tensor, memory: &Tensor) -> Result<Tensor> {
        let q = (q + self.self_attn.forward(&self.norm1.forward(q)?, None, None)?)?;
        let q = (&q + self.cross_attn.forward_cross(&self.norm2.forward(&q)?, memory, None)?)?;
        Ok((&q + self.mlp.forward(&self.norm3.forward(&q)?)?)?)
    }
}

/// NExT-GPT's `TextFcLayer(mode="transformer")`.
#[derive(Debug, Clone)]
pub struct OutputTransformer {
    fc: Linear,
    encoder: Vec<PreNormBlock>,
    encoder_norm: LayerNorm,
    queries: Tensor,
    decoder: Vec<DecoderLayer>,
    decoder_norm: LayerNorm,
    out: Linear,
}

impl OutputTransformer {
    /// `in_dim -> width`, `layers` encoder and decoder layers of `heads` heads, `queries`
    /// learned queries, `width -> out_dim`.
    pub fn new(
        in_dim: usize,
        width: usize,
        heads: usize,
        layers: usize,
        queries: usize,
        out_dim: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        if heads == 0 || width % heads != 0 || layers == 0 || queries == 0 {
            return Err(Error::config(
                "output_projector",
                format!("width {width} over {heads} heads, {layers} layers, {queries} queries"),
            ));
        }
        let block = BlockConfig {
            attention: AttentionConfig::new(width, heads),
            mlp: MlpConfig {
                hidden: width,
                intermediate: 4 * width,
                activation: Activation::Relu,
                gated: false,
                bias: true,
            },
            norm: NormConfig { kind: NormKind::LayerNorm, eps: 1e-5 },
        };
        let encoder = (0..layers)
            .map(|i| PreNormBlock::new(block, BlockNames::CLIP, vb.pp(format!("encoder.{i}"))))
            .collect::<Result<Vec<_>>>()?;
        let decoder = (0..layers)
            .map(|i| DecoderLayer::new(width, heads, vb.pp(format!("decoder.{i}"))))
            .collect::<Result<Vec<_>>>()?;
        let queries = vb.get_with_hints(
            (1, queries, width),
            "queries",
            Init::Randn { mean: 0.0, stdev: 1.0 },
        )?;
        Ok(Self {
            fc: Linear::new(in_dim, width, true, vb.pp("fc"))?,
            encoder,
            encoder_norm: LayerNorm::new(width, 1e-5, vb.pp("encoder_norm"))?,
            queries,
            decoder,
            decoder_norm: LayerNorm::new(width, 1e-5, vb.pp("decoder_norm"))?,
            out: Linear::new(width, out_dim, true, vb.pp("out"))?,
        })
    }

    /// hidden `[b, k, in]` plus the signal tokens' embeddings `[b, k, in]` (NExT-GPT adds
    /// them) -> condition `[b, queries, out]`.
    pub fn forward_with_embeds(&self, hidden: &Tensor, embeds: Option<&Tensor>) -> Result<Tensor> {
        let x = match embeds {
            Some(e) => (hidden + e)?,
            None => hidden.clone(),
        };
        let mut m = self.fc.forward(&x)?;
        for layer in &self.encoder {
            m = layer.forward(&m, None, None)?;
        }
        let m = self.encoder_norm.forward(&m)?;
        let b = hidden.dim(0)?;
        let (_, n, w) = self.queries.dims3()?;
        let mut q = self.queries.broadcast_as((b, n, w))?.contiguous()?;
        for layer in &self.decoder {
            q = layer.forward(&q, &m)?;
        }
        Ok(self.out.forward(&self.decoder_norm.forward(&q)?)?)
    }
}

impl OutputProjector for OutputTransformer {
    fn in_dim(&self) -> usize {
        self.fc.in_dim()
    }

    fn out_dim(&self) -> usize {
        self.out.out_dim()
    }

    fn project(&self, hidden: &Tensor) -> Result<Tensor> {
        self.forward_with_embeds(hidden, None)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use braid_nn::gradcheck::check_all_vars_get_grad;
    use candle_core::{DType, Device};
    use candle_nn::VarMap;

    #[test]
    fn both_projectors_shape_the_condition_and_train_every_variable() {
        let dev = Device::Cpu;
        let cases = [
            (OutputProjectorConfig::Mlp { hidden: 16 }, 4),
            (OutputProjectorConfig::Transformer { width: 16, heads: 2, layers: 2, queries: 6 }, 6),
        ];
        for (cfg, tokens) in cases {
            let vm = VarMap::new();
            let p = output_projector(&cfg, 12, 10, VarBuilder::from_varmap(&vm, DType::F32, &dev))
                .unwrap();
            assert_eq!((p.in_dim(), p.out_dim()), (12, 10));
            let h = Tensor::randn(0f32, 1.0, (3, 4, 12), &dev).unwrap();
            let y = p.project(&h).unwrap();
            assert_eq!(y.dims(), [3, tokens, 10]);
            let target = Tensor::randn(0f32, 1.0, (3, tokens, 10), &dev).unwrap();
            let loss = (y - target).unwrap().sqr().unwrap().mean_all().unwrap();
            check_all_vars_get_grad(&vm, &loss).unwrap();
        }
    }

    #[test]
    fn bad_shapes_are_named() {
        let vm = VarMap::new();
        let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
        let cfg = OutputProjectorConfig::Transformer { width: 10, heads: 3, layers: 1, queries: 2 };
        let err = output_projector(&cfg, 4, 4, vb).err().unwrap().to_string();
        assert!(err.contains("output_projector"), "{err}");
        let cfg: std::result::Result<OutputProjectorConfig, _> =
            toml::from_str("type = \"mlp\"\nhidden = 8\nwidth = 3\n");
        assert!(cfg.unwrap_err().to_string().contains("width"));
    }
}
