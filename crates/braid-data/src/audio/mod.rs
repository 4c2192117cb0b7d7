//! Audio input: decoding (WAV, FLAC, OGG/Vorbis, MP3 through symphonia), down-mixing,
//! resampling (rubato), a maximum duration, and the log-mel features of OpenAI Whisper
//! (Radford et al. 2022), equal to `transformers.WhisperFeatureExtractor`.

mod decode;
mod griffin_lim;
mod load;
mod mel;
mod resample;
mod riff;
mod stft;
mod write;

pub use decode::{decode_bytes, decode_file, Audio};
pub use griffin_lim::{griffin_lim, mel_to_linear};
pub use load::{load_audio, AudioOptions};
pub use mel::{mel_filter_bank, WhisperFeatures, WhisperFeaturesConfig};
pub use resample::resample;
pub use riff::{MAX_CHANNELS, MAX_SAMPLE_RATE};
pub use stft::power_spectrogram;
pub use write::encode_wav_pcm16;
