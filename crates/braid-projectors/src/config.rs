//! The typed choice of input projector, as written in `pipeline.toml`:
//!
//! ```toml
//! [projector]
//! type = "mlp"          # linear | mlp | resampler | qformer | upm
//! activation = "gelu"
//! ```

use braid_core::{Error, Result};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use crate::{
    InputProjector, LinearConfig, LinearProjector, MlpProjector, MlpProjectorConfig, QFormerConfig,
    QFormerProjector, Resampler, ResamplerConfig, UpmConfig, UpmProjector,
};

/// Which input projector to build, with its options. Widths come from the encoder and the
/// LLM, not from here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ProjectorConfig {
    /// One linear map (LLaVA v1).
    Linear(LinearConfig),
    /// Two linear layers with GELU between (LLaVA-1.5 `mlp2x_gelu`).
    Mlp(MlpProjectorConfig),
    /// Learned queries cross-attending to the features (Flamingo, Qwen-VL).
    Resampler(ResamplerConfig),
    /// BLIP-2's Q-Former with its query tokens and language projection.
    #[serde(rename = "qformer")]
    QFormer(QFormerConfig),
    /// OneLLM's universal projection module: routed experts shared by every slot of a
    /// pipeline that names it, queries, router and tags per modality.
    Upm(UpmConfig),
}

impl Default for ProjectorConfig {
    fn default() -> Self {
        Self::Mlp(MlpProjectorConfig::default())
    }
}

impl ProjectorConfig {
    /// The `type` names, in declaration order.
    pub const KINDS: [&'static str; 5] = ["linear", "mlp", "resampler", "qformer", "upm"];

    /// The `type` name of this configuration.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Linear(_) => "linear",
            Self::Mlp(_) => "mlp",
            Self::Resampler(_) => "resampler",
            Self::QFormer(_) => "qformer",
            Self::Upm(_) => "upm",
        }
    }

    /// Parses a projector table on its own (`type = "…"` and options). An unknown `type`
    /// is an [`Error::Unknown`] listing [`Self::KINDS`].
    pub fn from_toml(text: &str) -> Result<Self> {
        #[derive(Deserialize)]
        struct Tag {
            #[serde(rename = "type")]
            kind: String,
        }
        let tag: Tag =
            toml::from_str(text).map_err(|e| Error::config("projector.type", e.message()))?;
        if !Self::KINDS.contains(&tag.kind.as_str()) {
            return Err(Error::Unknown {
                kind: "projector kind".into(),
                name: tag.kind,
                known: Self::KINDS.iter().map(|k| k.to_string()).collect(),
            });
        }
        toml::from_str(text)
            .map_err(|e| Error::config(format!("projector ({})", tag.kind), e.message()))
    }

    /// Builds the projector under `vb`: in_dim is the encoder width, out_dim the LLM's. A
    /// UPM built here has experts of its own; a pipeline shares them between its slots
    /// ([`UpmProjector::with_experts`]).
    pub fn build(
        &self,
        in_dim: usize,
        out_dim: usize,
        vb: VarBuilder,
    ) -> Result<Box<dyn InputProjector>> {
        Ok(match self {
            Self::Linear(c) => Box::new(LinearProjector::new(*c, in_dim, out_dim, vb)?),
            Self::Mlp(c) => Box::new(MlpProjector::new(*c, in_dim, out_dim, vb)?),
            Self::Resampler(c) => Box::new(Resampler::new(*c, in_dim, out_dim, vb)?),
            Self::QFormer(c) => Box::new(QFormerProjector::new(c, in_dim, out_dim, vb)?),
            Self::Upm(c) => Box::new(UpmProjector::new(c, in_dim, out_dim, vb)?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::features;
    use candle_core::{DType, Device};
    use candle_nn::VarMap;

    /// A `pipeline.toml`-like document with the projector as one table among others.
    #[derive(Debug, Deserialize)]
    struct Pipeline {
        #[allow(dead_code)]
        llm: String,
        projector: ProjectorConfig,
    }

    fn pipeline(projector: &str) -> String {
        format!("llm = \"smollm2\"\n\n[projector]\n{projector}\n")
    }

    #[test]
    fn parses_each_kind_from_pipeline_toml() -> Result<()> {
        let cases = [
            ("type = \"linear\"", "linear"),
            ("type = \"mlp\"\nactivation = \"gelu\"", "mlp"),
            ("type = \"resampler\"\nnum_queries = 4\nheads = 2", "resampler"),
            ("type = \"qformer\"\nlayers = 2", "qformer"),
            ("type = \"upm\"\nexperts = 2\ntop_k = 1", "upm"),
        ];
        for (table, kind) in cases {
            let p: Pipeline = toml::from_str(&pipeline(table))
                .map_err(|e| Error::config("test", e.to_string()))?;
            assert_eq!(p.projector.kind(), kind);
        }
        let p: Pipeline = toml::from_str(&pipeline(cases[4].0))
            .map_err(|e| Error::config("test", e.to_string()))?;
        let upm = UpmConfig { experts: 2, top_k: Some(1), ..UpmConfig::default() };
        assert_eq!(p.projector, ProjectorConfig::Upm(upm));
        Ok(())
    }

    #[test]
    fn unknown_kind_lists_the_known_ones() {
        let err =
            toml::from_str::<Pipeline>(&pipeline("type = \"qformer_xl\"")).unwrap_err().to_string();
        for kind in ProjectorConfig::KINDS {
            assert!(err.contains(&format!("`{kind}`")), "{err}");
        }
        let err = ProjectorConfig::from_toml("type = \"qformer_xl\"").unwrap_err().to_string();
        assert_eq!(
            err,
            "unknown projector kind `qformer_xl`; known: linear, mlp, resampler, qformer, upm"
        );
    }

    #[test]
    fn unknown_option_is_an_error() {
        let err = ProjectorConfig::from_toml("type = \"mlp\"\ndepth = 3").unwrap_err().to_string();
        assert!(err.contains("depth"), "{err}");
    }

    #[test]
    fn round_trips_through_toml() -> Result<()> {
        for cfg in [
            ProjectorConfig::default(),
            ProjectorConfig::Linear(LinearConfig::default()),
            ProjectorConfig::Resampler(ResamplerConfig::default()),
            ProjectorConfig::QFormer(QFormerConfig::default()),
            ProjectorConfig::Upm(UpmConfig::default()),
        ] {
            let text = toml::to_string(&cfg).map_err(|e| Error::config("test", e.to_string()))?;
            assert_eq!(ProjectorConfig::from_toml(&text)?, cfg);
        }
        Ok(())
    }

    #[test]
    fn builds_each_kind() -> Result<()> {
        let expect = [("linear", 5), ("mlp", 5), ("resampler", 4), ("qformer", 2), ("upm", 4)];
        let tables = [
            "type = \"linear\"",
            "type = \"mlp\"",
            "type = \"resampler\"\nnum_queries = 4\nheads = 2",
            "type = \"qformer\"\nnum_query_tokens = 2\nhidden = 8\nlayers = 2\nheads = 2\nintermediate = 8",
            "type = \"upm\"\nqueries = 2\nwidth = 8\nheads = 2\nlayers = 1\nffn_multiple_of = 4",
        ];
        for ((kind, m), table) in expect.into_iter().zip(tables) {
            let cfg = ProjectorConfig::from_toml(table)?;
            let vm = VarMap::new();
            let p = cfg.build(6, 8, VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu))?;
            let out = p.project(&features(2, 5, 6, true)?)?;
            assert_eq!(out.tokens.dims(), &[2, m, 8], "{kind}");
            assert_eq!((p.in_dim(), p.out_dim()), (6, 8));
        }
        Ok(())
    }
}
