//! Image encoders: ViT patch embedding for any image and patch size, position-embedding
//! interpolation, the CLIP vision tower, and the full CLIP model (both towers and their
//! projections).

mod clip;
mod embeddings;
mod interpolate;
mod patch_embed;
mod tower;
pub(crate) mod vit;

pub use clip::{l2_normalize, Clip, ClipConfig};
pub use embeddings::VisionEmbeddings;
pub use interpolate::{bicubic_matrix, resize_grid};
pub use patch_embed::PatchEmbedding;
pub use tower::ImageTower;
pub use vit::{Vit, VitConfig, VitOutput};
