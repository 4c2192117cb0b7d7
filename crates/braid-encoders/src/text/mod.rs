//! Text encoders.

pub mod bert;
mod bert_load;
pub mod clip_text;
pub mod sentence;

pub use bert::{Bert, BertConfig};
pub use clip_text::{ClipText, ClipTextConfig};
pub use sentence::SentenceEncoder;
