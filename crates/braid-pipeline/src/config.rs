//! `pipeline.toml`: what a trained multimodal model directory is made of.

use std::path::Path;

use braid_core::{Error, Modality, Result};
use serde::{Deserialize, Serialize};

/// One modality's encoder and where its weights are.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncoderSlot {
    /// The modality whose placeholder (`<image>`) its tokens replace.
    pub modality: Modality,
    /// Registered name or path of the encoder's weights.
    pub model: String,
}

/// A multimodal model: encoders, projector and language model.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// Encoders, one per modality.
    #[serde(default)]
    pub encoders: Vec<EncoderSlot>,
    /// Registered name or path of the language model.
    pub llm: String,
}

impl PipelineConfig {
    /// Reads and validates a `pipeline.toml`; errors name the file and the field.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let cfg: Self = toml::from_str(&text)
            .map_err(|e| Error::format(path, e.message().to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks what serde cannot: no modality twice, a language model named.
    pub fn validate(&self) -> Result<()> {
        if self.llm.trim().is_empty() {
            return Err(Error::config("llm", "must name a language model"));
        }
        for (i, slot) in self.encoders.iter().enumerate() {
            if self.encoders[..i].iter().any(|s| s.modality == slot.modality) {
                return Err(Error::config(
                    format!("encoders[{i}].modality"),
                    format!("`{}` has two encoders", slot.modality),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), text).unwrap();
        f
    }

    #[test]
    fn loads_and_rejects_unknown_fields() {
        let f = write("llm = \"smollm2\"\n[[encoders]]\nmodality = \"image\"\nmodel = \"clip\"\n");
        let cfg = PipelineConfig::load(f.path()).unwrap();
        assert_eq!(cfg.encoders[0].modality, Modality::Image);
        let f = write("llm = \"smollm2\"\nprojecter = \"mlp\"\n");
        let err = PipelineConfig::load(f.path()).unwrap_err().to_string();
        assert!(err.contains("projecter"), "{err}");
        let f = write("llm = \"x\"\n[[encoders]]\nmodality = \"imu\"\nmodel = \"a\"\n[[encoders]]\nmodality = \"imu\"\nmodel = \"b\"\n");
        let err = PipelineConfig::load(f.path()).unwrap_err().to_string();
        assert!(err.contains("encoders[1].modality"), "{err}");
    }
}
