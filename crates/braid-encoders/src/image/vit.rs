//! The CLIP vision tower, a pre-norm ViT (Dosovitskiy et al. 2021; Radford et al. 2021,
//! "Learning Transferable Visual Models From Natural Language Supervision"): embeddings,
//! `pre_layrnorm`, pre-norm encoder layers, `post_layernorm` on the class token. Any hidden
//! layer can be read out (LLaVA takes the second to last).
//! Reference: `transformers.models.clip.modeling_clip.CLIPVisionTransformer`.

use braid_core::{Error, Features, Modality, Result};
use braid_nn::PreNormBlock;
use braid_nn::{
    Activation, AttentionConfig, BlockConfig, BlockNames, LayerNorm, MlpConfig, NormConfig,
    NormKind,
};
use candle_core::Tensor;
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use super::VisionEmbeddings;
use crate::shape::Shape;
use crate::Encoder;

/// The fields of a Hugging Face `CLIPVisionConfig`, with its defaults (ViT-B/32).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct VitConfig {
    /// Model width D.
    pub hidden_size: usize,
    /// MLP inner width.
    pub intermediate_size: usize,
    /// Encoder layers.
    pub num_hidden_layers: usize,
    /// Attention heads.
    pub num_attention_heads: usize,
    /// Input channels.
    pub num_channels: usize,
    /// Training resolution (square).
    pub image_size: usize,
    /// Patch side.
    pub patch_size: usize,
    /// MLP activation.
    pub hidden_act: Activation,
    /// LayerNorm epsilon.
    pub layer_norm_eps: f64,
}

impl VitConfig {
    /// The fields that shape the tower, by their `config.json` names.
    pub(crate) fn shape(&self) -> Shape<'static> {
        let sizes = [
            self.hidden_size,
            self.num_attention_heads,
            self.num_hidden_layers,
            self.intermediate_size,
        ];
        Shape::hf(
            sizes,
            self.layer_norm_eps,
            vec![
                ("num_channels", self.num_channels),
                ("image_size", self.image_size),
                ("patch_size", self.patch_size),
            ],
        )
    }

    /// The first field that cannot shape a tower (the shape, and a patch no larger than the
    /// image), by its `config.json` name, and why.
    pub fn problem(&self) -> Option<(String, String)> {
        self.shape().problem().or_else(|| {
            (self.patch_size > self.image_size).then(|| {
                let msg = format!(
                    "{} is larger than the image (`image_size` {})",
                    self.patch_size, self.image_size
                );
                ("patch_size".to_string(), msg)
            })
        })
    }
}

impl Default for VitConfig {
    fn default() -> Self {
        Self {
            hidden_size: 768,
            intermediate_size: 3072,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            num_channels: 3,
            image_size: 224,
            patch_size: 32,
            hidden_act: Activation::QuickGelu,
            layer_norm_eps: 1e-5,
        }
    }
}

/// A pre-norm encoder block of width `hidden` in CLIP's layout (shared with the text tower).
pub(crate) fn clip_block(
    hidden: usize,
    heads: usize,
    inter: usize,
    act: Activation,
    eps: f64,
) -> BlockConfig {
    BlockConfig {
        attention: AttentionConfig::new(hidden, heads),
        mlp: MlpConfig { hidden, intermediate: inter, activation: act, gated: false, bias: true },
        norm: NormConfig { kind: NormKind::LayerNorm, eps },
    }
}

/// Output of [`Vit::forward`].
#[derive(Debug, Clone)]
pub struct VitOutput {
    /// Last encoder layer, before `post_layernorm`: [batch, 1 + n, D].
    pub last_hidden_state: Tensor,
    /// `post_layernorm` of the class token: [batch, D].
    pub pooled: Tensor,
}

/// The CLIP vision transformer (`CLIPVisionModel.vision_model`).
#[derive(Debug, Clone)]
pub struct Vit {
    embeddings: VisionEmbeddings,
    pre_norm: LayerNorm,
    layers: Vec<PreNormBlock>,
    post_norm: LayerNorm,
    feature_layer: isize,
    cfg: VitConfig,
}

impl Vit {
    /// Builds from `vb` at the `vision_model` root (`embeddings.*`, `pre_layrnorm.*`,
    /// `encoder.layers.N.*`, `post_layernorm.*`).
    pub fn new(cfg: &VitConfig, vb: VarBuilder) -> Result<Self> {
        let d = cfg.hidden_size;
        let block = clip_block(
            d,
            cfg.num_attention_heads,
            cfg.intermediate_size,
            cfg.hidden_act,
            cfg.layer_norm_eps,
        );
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| {
                PreNormBlock::new(block, BlockNames::CLIP, vb.pp(format!("encoder.layers.{i}")))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            embeddings: VisionEmbeddings::new(
                cfg.num_channels,
                cfg.image_size,
                cfg.patch_size,
                d,
                vb.pp("embeddings"),
            )?,
            pre_norm: LayerNorm::new(d, cfg.layer_norm_eps, vb.pp("pre_layrnorm"))?,
            layers,
            post_norm: LayerNorm::new(d, cfg.layer_norm_eps, vb.pp("post_layernorm"))?,
            feature_layer: -1,
            cfg: cfg.clone(),
        })
    }

    /// Makes [`Encoder::encode`] return `hidden_states[index]` (Python indexing over the
    /// `num_hidden_layers + 1` states; LLaVA uses -2).
    pub fn with_feature_layer(mut self, index: isize) -> Result<Self> {
        self.layers_for(index)?;
        self.feature_layer = index;
        Ok(self)
    }

    /// The configuration.
    pub fn config(&self) -> &VitConfig {
        &self.cfg
    }

    /// How many encoder layers produce `hidden_states[index]`.
    fn layers_for(&self, index: isize) -> Result<usize> {
        let n = self.layers.len() as isize + 1;
        let i = if index < 0 { n + index } else { index };
        if !(0..n).contains(&i) {
            return Err(Error::Invalid(format!(
                "hidden layer {index} does not exist: the model has {n} hidden states"
            )));
        }
        Ok(i as usize)
    }

    /// `hidden_states[index]` as transformers returns with `output_hidden_states=True`
    /// (0 = embeddings after `pre_layrnorm`, -1 = last layer); later layers are not run.
    ///
    /// pixels: [batch, C, H, W] -> [batch, 1 + (H/p)(W/p), D]
    pub fn hidden_state(&self, pixels: &Tensor, index: isize) -> Result<Tensor> {
        let upto = self.layers_for(index)?;
        let mut x = self.pre_norm.forward(&self.embeddings.forward(pixels)?)?;
        for layer in &self.layers[..upto] {
            x = layer.forward(&x, None, None)?;
        }
        Ok(x)
    }

    /// pixels: [batch, C, H, W] -> last hidden state [batch, 1 + n, D], pooled [batch, D]
    pub fn forward(&self, pixels: &Tensor) -> Result<VitOutput> {
        let last = self.hidden_state(pixels, -1)?;
        let pooled = self.post_norm.forward(&last.narrow(1, 0, 1)?.squeeze(1)?)?;
        Ok(VitOutput { last_hidden_state: last, pooled })
    }
}

impl Encoder for Vit {
    fn modality(&self) -> Modality {
        Modality::Image
    }

    fn output_dim(&self) -> usize {
        self.cfg.hidden_size
    }

    /// pixels: [batch, C, H, W] -> tokens `hidden_states[feature_layer]` [batch, 1 + n, D]
    fn encode(&self, input: &Tensor, _mask: Option<&Tensor>) -> Result<Features> {
        Features::new(self.hidden_state(input, self.feature_layer)?, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use braid_nn::gradcheck::check_all_vars_get_grad;
    use candle_core::{DType, Device};
    use candle_nn::VarMap;

    fn tiny() -> VitConfig {
        VitConfig {
            hidden_size: 16,
            intermediate_size: 24,
            num_hidden_layers: 2,
            num_attention_heads: 2,
            image_size: 16,
            patch_size: 4,
            ..Default::default()
        }
    }

    #[test]
    fn every_weight_gets_gradient() {
        let vm = VarMap::new();
        let vit =
            Vit::new(&tiny(), VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu)).unwrap();
        let px = Tensor::randn(0f32, 1., (2, 3, 16, 16), &Device::Cpu).unwrap();
        let out = vit.forward(&px).unwrap();
        let loss = (out.last_hidden_state.sqr().unwrap().mean_all().unwrap()
            + out.pooled.sum_all().unwrap())
        .unwrap();
        check_all_vars_get_grad(&vm, &loss).unwrap();
    }

    #[test]
    fn feature_layer_is_checked_and_used() {
        let vm = VarMap::new();
        let vit =
            Vit::new(&tiny(), VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu)).unwrap();
        assert!(vit
            .clone()
            .with_feature_layer(3)
            .unwrap_err()
            .to_string()
            .contains("3 hidden states"));
        let vit = vit.with_feature_layer(-2).unwrap();
        let px = Tensor::randn(0f32, 1., (1, 3, 16, 16), &Device::Cpu).unwrap();
        let f = vit.encode(&px, None).unwrap();
        braid_core::testing::assert_close(
            &f.tokens,
            &vit.hidden_state(&px, 1).unwrap(),
            0.0,
            "layer -2",
        )
        .unwrap();
        // Other resolutions interpolate the position embeddings.
        let px = Tensor::randn(0f32, 1., (1, 3, 24, 20), &Device::Cpu).unwrap();
        assert_eq!(vit.encode(&px, None).unwrap().tokens.dims(), &[1, 1 + 6 * 5, 16]);
    }
}
