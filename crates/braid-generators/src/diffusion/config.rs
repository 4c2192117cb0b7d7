//! The `config.json` of a diffusers `UNet2DConditionModel` and `AutoencoderKL`.
//!
//! diffusers writes every option of a model class into its config, most of them switches
//! for other architectures (SDXL's added embeddings, class embeddings, ...). A switch Braid
//! implements is a field of [`UNetConfig`] / [`VaeConfig`]; a switch it does not is
//! accepted only at the value that turns it off, so a checkpoint that needs it fails to
//! load, naming the field, instead of running wrongly. Unknown fields are errors.

use std::path::Path;

use braid_core::{Error, Result};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// One value, or one per block (`attention_head_dim: 8` or `[5, 10, 20, 20]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PerBlock {
    /// The same for every block.
    One(usize),
    /// Block by block, in the down blocks' order.
    Each(Vec<usize>),
}

impl PerBlock {
    /// The value of each of `n` blocks; a list of another length is an error naming `field`.
    pub fn expand(&self, n: usize, field: &str) -> Result<Vec<usize>> {
        match self {
            Self::One(v) => Ok(vec![*v; n]),
            Self::Each(v) if v.len() == n => Ok(v.clone()),
            Self::Each(v) => {
                Err(Error::config(field, format!("{} values for {n} blocks", v.len())))
            }
        }
    }
}

/// Down and up block kinds of the UNet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BlockKind {
    /// Resnets, each followed by a `Transformer2DModel` reading the condition.
    #[serde(rename = "CrossAttnDownBlock2D", alias = "CrossAttnUpBlock2D")]
    CrossAttn,
    /// Resnets only.
    #[serde(rename = "DownBlock2D", alias = "UpBlock2D")]
    Plain,
}

/// The `UNet2DConditionModel` options Braid implements (diffusers' names and defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UNetConfig {
    /// Latent height and width it was trained at.
    pub sample_size: usize,
    /// Latent channels in.
    pub in_channels: usize,
    /// Channels out (the predicted noise).
    pub out_channels: usize,
    /// Down blocks, outermost first.
    pub down_block_types: Vec<BlockKind>,
    /// Up blocks, innermost first.
    pub up_block_types: Vec<BlockKind>,
    /// Channels of each down block.
    pub block_out_channels: Vec<usize>,
    /// Resnets per down block (up blocks have one more).
    pub layers_per_block: usize,
    /// In diffusers' legacy naming, the attention heads of each block (not their width).
    pub attention_head_dim: PerBlock,
    /// Attention heads of each block, where set (it takes precedence).
    pub num_attention_heads: Option<PerBlock>,
    /// Transformer blocks in each `Transformer2DModel`.
    pub transformer_layers_per_block: PerBlock,
    /// Width of the condition (the text encoder's hidden size).
    pub cross_attention_dim: usize,
    /// Groups of every GroupNorm.
    pub norm_num_groups: usize,
    /// Epsilon of the resnets' and the output's GroupNorm.
    pub norm_eps: f64,
    /// Timestep embedding as `[cos, sin]` (true) or `[sin, cos]`.
    pub flip_sin_to_cos: bool,
    /// Frequency shift of the timestep embedding.
    pub freq_shift: f64,
    /// Padding of the downsampling convolutions.
    pub downsample_padding: usize,
    /// `Linear` instead of 1x1 convolutions into and out of the transformers (SD 2).
    pub use_linear_projection: bool,
    /// Kernel of `conv_in`.
    pub conv_in_kernel: usize,
    /// Kernel of `conv_out`.
    pub conv_out_kernel: usize,
    /// Attention in f32 (Braid's attention computes scores in f32 anyway).
    pub upcast_attention: bool,
    /// Training dropout (not applied at inference).
    pub dropout: f64,
    /// Heads of an added embedding that is off here (ignored).
    pub addition_embed_type_num_heads: usize,
}

impl Default for UNetConfig {
    fn default() -> Self {
        use BlockKind::{CrossAttn, Plain};
        Self {
            sample_size: 64,
            in_channels: 4,
            out_channels: 4,
            down_block_types: vec![CrossAttn, CrossAttn, CrossAttn, Plain],
            up_block_types: vec![Plain, CrossAttn, CrossAttn, CrossAttn],
            block_out_channels: vec![320, 640, 1280, 1280],
            layers_per_block: 2,
            attention_head_dim: PerBlock::One(8),
            num_attention_heads: None,
            transformer_layers_per_block: PerBlock::One(1),
            cross_attention_dim: 1280,
            norm_num_groups: 32,
            norm_eps: 1e-5,
            flip_sin_to_cos: true,
            freq_shift: 0.0,
            downsample_padding: 1,
            use_linear_projection: false,
            conv_in_kernel: 3,
            conv_out_kernel: 3,
            upcast_attention: false,
            dropout: 0.0,
            addition_embed_type_num_heads: 64,
        }
    }
}

/// UNet switches accepted only at the value that turns them off.
fn unet_fixed() -> Vec<(&'static str, Vec<Value>)> {
    let null = || vec![Value::Null];
    vec![
        ("act_fn", vec![json!("silu")]),
        ("addition_embed_type", null()),
        ("addition_time_embed_dim", null()),
        ("attention_type", vec![json!("default")]),
        ("center_input_sample", vec![json!(false)]),
        ("class_embed_type", null()),
        ("class_embeddings_concat", vec![json!(false)]),
        ("cross_attention_norm", null()),
        ("dual_cross_attention", vec![json!(false)]),
        ("encoder_hid_dim", null()),
        ("encoder_hid_dim_type", null()),
        ("mid_block_only_cross_attention", vec![Value::Null, json!(false)]),
        ("mid_block_scale_factor", vec![json!(1), json!(1.0)]),
        ("mid_block_type", vec![json!("UNetMidBlock2DCrossAttn")]),
        ("num_class_embeds", null()),
        ("only_cross_attention", vec![json!(false)]),
        ("projection_class_embeddings_input_dim", null()),
        ("resnet_out_scale_factor", vec![json!(1), json!(1.0)]),
        ("resnet_skip_time_act", vec![json!(false)]),
        ("resnet_time_scale_shift", vec![json!("default")]),
        ("reverse_transformer_layers_per_block", null()),
        ("time_cond_proj_dim", null()),
        ("time_embedding_act_fn", null()),
        ("time_embedding_dim", null()),
        ("time_embedding_type", vec![json!("positional")]),
        ("timestep_post_act", null()),
    ]
}

/// The `AutoencoderKL` options Braid implements.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VaeConfig {
    /// Image channels in.
    pub in_channels: usize,
    /// Image channels out.
    pub out_channels: usize,
    /// Encoder blocks (all `DownEncoderBlock2D`).
    pub down_block_types: Vec<String>,
    /// Decoder blocks (all `UpDecoderBlock2D`).
    pub up_block_types: Vec<String>,
    /// Channels of each encoder block.
    pub block_out_channels: Vec<usize>,
    /// Resnets per encoder block (decoder blocks have one more).
    pub layers_per_block: usize,
    /// Latent channels.
    pub latent_channels: usize,
    /// Groups of every GroupNorm.
    pub norm_num_groups: usize,
    /// Image size it was trained at.
    pub sample_size: usize,
    /// Latents are multiplied by this after encoding (divided before decoding).
    pub scaling_factor: f64,
    /// A 1x1 convolution after the encoder.
    pub use_quant_conv: bool,
    /// A 1x1 convolution before the decoder.
    pub use_post_quant_conv: bool,
    /// Self-attention in the middle blocks.
    pub mid_block_add_attention: bool,
    /// Whether diffusers runs it in f32 under half precision (Braid's choice is the caller's).
    pub force_upcast: bool,
}

impl Default for VaeConfig {
    fn default() -> Self {
        Self {
            in_channels: 3,
            out_channels: 3,
            down_block_types: vec!["DownEncoderBlock2D".into()],
            up_block_types: vec!["UpDecoderBlock2D".into()],
            block_out_channels: vec![64],
            layers_per_block: 1,
            latent_channels: 4,
            norm_num_groups: 32,
            sample_size: 32,
            scaling_factor: 0.18215,
            use_quant_conv: true,
            use_post_quant_conv: true,
            mid_block_add_attention: true,
            force_upcast: true,
        }
    }
}

fn vae_fixed() -> Vec<(&'static str, Vec<Value>)> {
    vec![
        ("act_fn", vec![json!("silu")]),
        ("latents_mean", vec![Value::Null]),
        ("latents_std", vec![Value::Null]),
        ("shift_factor", vec![Value::Null]),
    ]
}

/// The fields of a diffusers config other than `_`-prefixed bookkeeping and the switches
/// in `fixed`, each of which must hold one of its accepted values (an error names it).
pub(crate) fn split_fixed(
    map: Map<String, Value>,
    fixed: &[(&'static str, Vec<Value>)],
) -> Result<Map<String, Value>> {
    let mut rest = Map::new();
    for (key, value) in map {
        if key.starts_with('_') {
            continue;
        }
        match fixed.iter().find(|(k, _)| *k == key) {
            Some((_, ok)) if ok.contains(&value) => {}
            Some((_, ok)) => {
                let accepted = ok.iter().map(Value::to_string).collect::<Vec<_>>().join(" or ");
                return Err(Error::config(
                    key,
                    format!("{value} is not supported (Braid implements {accepted})"),
                ));
            }
            None => {
                rest.insert(key, value);
            }
        }
    }
    Ok(rest)
}

/// Reads a diffusers `config.json`: `_`-prefixed bookkeeping is skipped, each switch in
/// `fixed` must hold one of its accepted values, and the rest must be fields of `T`.
fn read_checked<T: DeserializeOwned>(
    path: &Path,
    fixed: &[(&'static str, Vec<Value>)],
) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let map: Map<String, Value> =
        serde_json::from_str(&text).map_err(|e| Error::format(path, e.to_string()))?;
    let rest = split_fixed(map, fixed).map_err(|e| Error::format(path, e.to_string()))?;
    serde_json::from_value(Value::Object(rest)).map_err(|e| Error::format(path, e.to_string()))
}

impl UNetConfig {
    /// Reads and checks `unet/config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let cfg: Self = read_checked(path, &unet_fixed())?;
        cfg.validate().map_err(|e| Error::format(path, e.to_string()))?;
        Ok(cfg)
    }

    /// Consistency of the block lists, channels and groups.
    pub fn validate(&self) -> Result<()> {
        let n = self.block_out_channels.len();
        if n == 0 || self.down_block_types.len() != n || self.up_block_types.len() != n {
            return Err(Error::config(
                "block_out_channels",
                format!(
                    "{n} channel entries for {} down and {} up blocks",
                    self.down_block_types.len(),
                    self.up_block_types.len()
                ),
            ));
        }
        let heads = self.heads()?;
        for (i, (&c, &h)) in self.block_out_channels.iter().zip(&heads).enumerate() {
            if c % self.norm_num_groups != 0 {
                return Err(Error::config(
                    "norm_num_groups",
                    format!(
                        "block {i}'s {c} channels are not a multiple of {}",
                        self.norm_num_groups
                    ),
                ));
            }
            if h == 0 || c % h != 0 {
                return Err(Error::config(
                    "attention_head_dim",
                    format!("block {i}'s {c} channels cannot be split into {h} heads"),
                ));
            }
        }
        self.transformer_layers_per_block.expand(n, "transformer_layers_per_block")?;
        for (field, k) in
            [("conv_in_kernel", self.conv_in_kernel), ("conv_out_kernel", self.conv_out_kernel)]
        {
            if k % 2 == 0 {
                return Err(Error::config(field, format!("{k}: only odd kernels keep the size")));
            }
        }
        if self.layers_per_block == 0 || self.cross_attention_dim == 0 {
            return Err(Error::config("layers_per_block", "layers and widths must be positive"));
        }
        Ok(())
    }

    /// Attention heads of each down block (diffusers: `num_attention_heads or
    /// attention_head_dim`).
    pub fn heads(&self) -> Result<Vec<usize>> {
        let n = self.block_out_channels.len();
        match &self.num_attention_heads {
            Some(h) => h.expand(n, "num_attention_heads"),
            None => self.attention_head_dim.expand(n, "attention_head_dim"),
        }
    }

    /// The `config.json` diffusers reads (`UNet2DConditionModel.from_pretrained`).
    pub fn to_diffusers_json(&self) -> Result<Value> {
        let mut v = serde_json::to_value(self).map_err(|e| Error::Invalid(e.to_string()))?;
        let names = |kinds: &[BlockKind], cross: &str, plain: &str| -> Value {
            kinds
                .iter()
                .map(|k| match k {
                    BlockKind::CrossAttn => json!(cross),
                    BlockKind::Plain => json!(plain),
                })
                .collect()
        };
        v["_class_name"] = json!("UNet2DConditionModel");
        v["down_block_types"] =
            names(&self.down_block_types, "CrossAttnDownBlock2D", "DownBlock2D");
        v["up_block_types"] = names(&self.up_block_types, "CrossAttnUpBlock2D", "UpBlock2D");
        Ok(v)
    }

    /// Width of the timestep embedding (4x the first block's channels).
    pub fn time_embed_dim(&self) -> usize {
        self.block_out_channels[0] * 4
    }
}

impl VaeConfig {
    /// Reads and checks `vae/config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let cfg: Self = read_checked(path, &vae_fixed())?;
        let n = cfg.block_out_channels.len();
        let bad = |field: &str, msg: String| Err(Error::format(path, format!("`{field}`: {msg}")));
        if n == 0 || cfg.down_block_types.len() != n || cfg.up_block_types.len() != n {
            return bad("block_out_channels", format!("{n} entries for the block lists"));
        }
        if let Some(b) = cfg.down_block_types.iter().find(|b| *b != "DownEncoderBlock2D") {
            return bad("down_block_types", format!("{b} is not supported"));
        }
        if let Some(b) = cfg.up_block_types.iter().find(|b| *b != "UpDecoderBlock2D") {
            return bad("up_block_types", format!("{b} is not supported"));
        }
        if let Some(c) =
            cfg.block_out_channels.iter().find(|&&c| c % cfg.norm_num_groups.max(1) != 0)
        {
            return bad(
                "norm_num_groups",
                format!("{c} channels are not a multiple of {}", cfg.norm_num_groups),
            );
        }
        if !(cfg.scaling_factor.is_finite() && cfg.scaling_factor > 0.0) {
            return bad("scaling_factor", format!("{} must be positive", cfg.scaling_factor));
        }
        Ok(cfg)
    }

    /// Image pixels per latent pixel along each axis.
    pub fn scale(&self) -> usize {
        1 << (self.block_out_channels.len() - 1)
    }
}
