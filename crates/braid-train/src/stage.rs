//! Stages decide which components' `VarMap`s the optimiser sees: freezing is structural.

use serde::{Deserialize, Serialize};

/// A component of a multimodal model that owns its own `VarMap`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Component {
    /// Modality encoders.
    Encoder,
    /// Input projectors.
    InputProjector,
    /// LoRA adapters on the language model.
    LlmLora,
    /// The language model's own weights.
    Llm,
    /// Classification or contrastive heads.
    Head,
    /// Output projectors.
    OutputProjector,
    /// A modality generator (with its own condition encoder).
    Generator,
}

/// A training stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Stage-1 alignment: only the input projectors train.
    Align,
    /// Stage-2 instruction tuning: projectors and LoRA on the LLM.
    Instruct,
    /// Preference tuning (DPO) on chosen/rejected answers: projectors and LoRA.
    Preference,
    /// Contrastive shared representations: encoders and heads.
    Contrastive,
    /// Supervised classification: encoder and head.
    Classify,
    /// A fusion classifier: encoders (unless frozen) and the fusion layers.
    Fuse,
    /// A conditional diffusion generator and its text encoder, from images and captions.
    Diffusion,
}

impl Stage {
    /// The components whose variables the optimiser updates in this stage.
    pub fn trainable(self) -> &'static [Component] {
        match self {
            Self::Align => &[Component::InputProjector],
            Self::Instruct | Self::Preference => &[Component::InputProjector, Component::LlmLora],
            Self::Contrastive => &[Component::Encoder, Component::Head],
            Self::Classify => &[Component::Encoder, Component::Head],
            Self::Fuse => &[Component::Encoder, Component::Head],
            Self::Diffusion => &[Component::Generator],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn align_trains_projectors_only() {
        assert_eq!(Stage::Align.trainable(), &[Component::InputProjector]);
        assert!(!Stage::Instruct.trainable().contains(&Component::Llm));
        let s: Stage = serde_json::from_str("\"instruct\"").unwrap();
        assert_eq!(s, Stage::Instruct);
    }
}
