//! Video input: frame folders, animated GIFs, and MP4/WebM (or anything else the system's
//! `ffmpeg` reads), with uniform or fixed-rate sampling of T frames; frames become image
//! tensors through `braid_data::image::ImageProcessor`. Sampling follows the conventions of
//! VideoMAE / X-CLIP processors in transformers (uniform: segment centres).

mod budget;
mod ffmpeg;
mod folder;
mod gif;
mod load;
mod sampling;

pub use ffmpeg::decode_with_ffmpeg;
pub use folder::frame_paths;
pub use gif::decode_gif;
pub use load::{frames_tensor, load_video, Video, VideoOptions};
pub use sampling::FrameSampling;
