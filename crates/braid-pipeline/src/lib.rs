//! Wires parts 1 to 5 (encoders, input projectors, language model, output projectors,
//! generators) from one [`PipelineConfig`]; the only crate that knows all five.
#![deny(missing_docs)]

mod answer;
mod build;
mod config;
mod eval_conversations;
mod eval_vqa;
mod head;
pub mod llava;
mod model;
mod pipeline;
mod preprocess;
mod prompt;
mod routing;
pub mod splice;
mod store;
pub use store::relative as relative_path;

pub use answer::answer_questions;
pub use braid_llm::Weights;
pub use config::{
    generic_placeholder, EncoderSlot, GeneratorSlot, LoraSettings, PipelineConfig, PromptConfig,
};
pub use eval_conversations::{
    evaluate_conversations, question_type, sample_inputs, ConversationReport, ScoredAnswer,
    TypeScore,
};
pub use eval_vqa::{evaluate_vqa, VqaAnswer, VqaReport};
pub use head::{ContrastiveConfig, Head, HeadConfig, CONTRASTIVE_FILE};
pub use llava::{Llava, LlavaConfig};
pub use model::MultimodalModel;
pub use pipeline::{Input, Pipeline};
pub use preprocess::{AudioPreprocess, ImagePreprocess, ImuPreprocess, Preprocess, Size};
pub use prompt::{place_media, qa_messages, Placeholder, Prompter, Sample, IGNORE};
pub use routing::{routing_by_modality, Routing};
pub use store::PIPELINE_FILE;
