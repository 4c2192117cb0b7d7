//! Images: safe decoding (format sniffing, decompression-bomb limit, EXIF orientation,
//! gray / RGBA / palette to RGB) and Hugging Face-equal preprocessing driven by
//! `preprocessor_config.json`.

mod decode;
mod processor;
mod resample;

pub mod folder;
pub use decode::{decode_rgb, load_rgb, MAX_PIXELS};
pub use folder::ImageFolder;
pub use processor::{ImageProcessor, ImageProcessorConfig, SizeSpec};
pub use resample::{resize_rgb, Filter};
