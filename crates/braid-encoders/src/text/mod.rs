//! Text encoders.

pub mod bert;

pub use bert::{Bert, BertConfig};
