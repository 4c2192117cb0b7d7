//! Decoding, validation and preprocessing of every modality, tokenizers, dataset formats
//! (JSONL manifests, LLaVA conversations, UEA `.ts`, IDX, npz) and batching, and the
//! conversation and fusion datasets Braid makes itself ([`make`], [`fusion`]).
#![deny(missing_docs)]

pub mod audio;
pub mod conversation;
mod dataset;
pub mod fusion;
pub mod image;
pub mod imu;
pub mod make;
pub mod text;
pub mod video;
pub mod vqa;

pub use dataset::Dataset;
