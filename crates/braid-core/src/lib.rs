//! Braid's foundation: the error type every library crate returns, the modality and
//! feature types that flow between the five components, device choice, checkpoint I/O
//! (safetensors, GGUF, `.npy`/`.npz`, a safe pickle reader) and test helpers.
#![deny(missing_docs)]

pub mod checkpoint;
pub mod device;
pub mod error;
pub mod features;
pub mod fsx;
pub mod limits;
pub mod modality;
pub mod pickle;
pub mod testing;

pub use device::{default_device, parse_device};
pub use error::{Error, Result};
pub use features::Features;
pub use modality::Modality;
