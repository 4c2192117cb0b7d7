//! Decoding, validation and preprocessing of every modality, tokenizers, dataset formats
//! (JSONL manifests, LLaVA conversations, UEA `.ts`, IDX, npz) and batching, and the
//! conversation datasets Braid makes itself ([`make`]).
#![deny(missing_docs)]

pub mod audio;
pub mod conversation;
mod dataset;
pub mod image;
pub mod imu;
pub mod make;
pub mod text;
pub mod video;
pub mod vqa;

pub use dataset::Dataset;
