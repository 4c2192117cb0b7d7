//! Text: tokenizers from `tokenizer.json` (WordPiece, byte-level BPE) with batch padding
//! and counted truncation, and one-text-per-line input files.

mod lines;
mod tokenizer;

pub use lines::read_lines;
pub use tokenizer::{Encoded, TextTokenizer, TokenBatch};
