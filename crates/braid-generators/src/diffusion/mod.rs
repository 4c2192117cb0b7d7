//! Image generation in the Stable Diffusion layout (Rombach et al. 2022, "High-Resolution
//! Image Synthesis with Latent Diffusion Models"): diffusers' `UNet2DConditionModel` and
//! `AutoencoderKL`, the CLIP text encoder of braid-encoders for the condition, DDIM and
//! Euler samplers, and the folder `StableDiffusionPipeline.save_pretrained` writes.
//! Every layer is built from ops with a backward pass, so the same modules train.

mod blocks;
pub mod config;
pub mod pipeline;
pub mod save;
pub mod scheduler;
pub mod unet;
pub mod vae;

pub use config::{UNetConfig, VaeConfig};
pub use pipeline::StableDiffusion;
pub use save::{save_pixel_folder, save_png_grid, FolderSpec};
pub use scheduler::{Plan, Prediction, Scheduler, SchedulerKind, Spacing};
pub use unet::UNet2DCondition;
pub use vae::AutoencoderKl;
