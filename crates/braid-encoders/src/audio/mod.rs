//! Audio encoders over log-mel input `[batch, mels, frames]` (from
//! `braid_data::audio::WhisperFeatures`): the pretrained Whisper encoder
//! ([`WhisperEncoder`]) and a spectrogram-patch transformer to train from scratch
//! ([`SpectrogramPatchEncoder`], AST / OneLLM style).

mod spec_patch;
mod whisper;
mod whisper_load;
mod zero_key_bias;

pub use spec_patch::{SpectrogramPatchConfig, SpectrogramPatchEncoder};
pub use whisper::{sinusoids, WhisperConfig, WhisperEncoder};
