//! Decoding an audio file to interleaved f32 samples with symphonia (WAV, FLAC, OGG
//! Vorbis, MP3). A file that ends before the frame count its header promises is an error,
//! not silently shorter audio; so are a sample rate of 0 or above 1 MHz (checked in the
//! WAV header before symphonia sees it), more samples than
//! [`braid_core::limits::AUDIO_SAMPLES`], and NaN or infinite samples (float WAVs).

use std::fs::File;
use std::path::Path;

use braid_core::limits::AUDIO_SAMPLES;
use braid_core::{Error, Result};
use symphonia::core::audio::SampleBuffer;
use symphonia::core::codecs::{DecoderOptions, CODEC_TYPE_NULL};
use symphonia::core::errors::Error as SymError;
use symphonia::core::formats::{FormatOptions, FormatReader};
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

use super::riff::{self, MAX_SAMPLE_RATE};

/// Decoded audio: interleaved samples in [-1, 1].
#[derive(Debug, Clone, PartialEq)]
pub struct Audio {
    /// Interleaved samples, `frames * channels` of them.
    pub samples: Vec<f32>,
    /// Channels per frame.
    pub channels: usize,
    /// Frames per second.
    pub sample_rate: u32,
}

impl Audio {
    /// Frames (samples per channel).
    pub fn frames(&self) -> usize {
        self.samples.len() / self.channels.max(1)
    }

    /// Duration in seconds.
    pub fn seconds(&self) -> f64 {
        self.frames() as f64 / f64::from(self.sample_rate.max(1))
    }

    /// The mean of the channels of each frame.
    pub fn to_mono(&self) -> Vec<f32> {
        let c = self.channels.max(1);
        let scale = 1.0 / c as f32;
        self.samples.chunks_exact(c).map(|f| f.iter().sum::<f32>() * scale).collect()
    }
}

/// Decodes the first audio track of `path`; the extension is a hint, the content decides.
pub fn decode_file(path: impl AsRef<Path>) -> Result<Audio> {
    let path = path.as_ref();
    if let Some(msg) = riff::precheck(path) {
        return Err(Error::format(path, msg));
    }
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    decode_source(Box::new(file), path)
}

/// Decodes audio held in memory (an upload) as [`decode_file`] decodes a file; `name`
/// stands for it in errors (its extension, if any, is a hint).
pub fn decode_bytes(bytes: Vec<u8>, name: &Path) -> Result<Audio> {
    if let Some(msg) = riff::precheck_head(&bytes) {
        return Err(Error::format(name, msg));
    }
    decode_source(Box::new(std::io::Cursor::new(bytes)), name)
}

fn decode_source(source: Box<dyn symphonia::core::io::MediaSource>, name: &Path) -> Result<Audio> {
    // A backstop for asserts inside symphonia on headers of other formats.
    let run = std::panic::AssertUnwindSafe(|| decode_checked(source, name));
    match std::panic::catch_unwind(run) {
        Ok(result) => result,
        Err(_) => Err(Error::format(name, "corrupt audio file (the decoder gave up)")),
    }
}

fn decode_checked(source: Box<dyn symphonia::core::io::MediaSource>, path: &Path) -> Result<Audio> {
    let mss = MediaSourceStream::new(source, Default::default());
    let mut hint = Hint::new();
    if let Some(ext) = path.extension().and_then(|e| e.to_str()) {
        hint.with_extension(ext);
    }
    let probed = symphonia::default::get_probe()
        .format(&hint, mss, &FormatOptions::default(), &MetadataOptions::default())
        .map_err(|e| {
            Error::format(path, format!("not a readable audio file (WAV, FLAC, OGG, MP3): {e}"))
        })?;
    let audio = decode_track(path, probed.format)?;
    if audio.frames() == 0 {
        return Err(Error::format(path, "the file holds no audio samples (zero-length audio)"));
    }
    if let Some(i) = audio.samples.iter().position(|x| !x.is_finite()) {
        let (frame, channel) = (i / audio.channels, i % audio.channels);
        let msg = format!(
            "sample {} of frame {frame}, channel {channel}, is not a finite number",
            audio.samples[i]
        );
        return Err(Error::format(path, msg));
    }
    Ok(audio)
}

fn decode_track(path: &Path, mut format: Box<dyn FormatReader>) -> Result<Audio> {
    let bad = |msg: String| Error::format(path, msg);
    let track = format
        .tracks()
        .iter()
        .find(|t| t.codec_params.codec != CODEC_TYPE_NULL)
        .ok_or_else(|| bad("no audio track".into()))?;
    let (track_id, promised) = (track.id, track.codec_params.n_frames);
    let sample_rate =
        track.codec_params.sample_rate.ok_or_else(|| bad("no sample rate in the header".into()))?;
    if sample_rate == 0 || sample_rate > MAX_SAMPLE_RATE {
        return Err(bad(format!(
            "sample rate {sample_rate} Hz is outside 1..={MAX_SAMPLE_RATE} Hz"
        )));
    }
    let channels_claimed = track.codec_params.channels.map_or(1, |c| c.count().max(1)) as u64;
    if let Some(n) = promised {
        AUDIO_SAMPLES
            .check_opt(n.checked_mul(channels_claimed), &format!("the header's {n} frames"))
            .map_err(&bad)?;
    }
    let mut decoder = symphonia::default::get_codecs()
        .make(&track.codec_params, &DecoderOptions::default())
        .map_err(|e| bad(format!("unsupported codec: {e}")))?;
    let (mut samples, mut channels) = (Vec::new(), 0usize);
    loop {
        let packet = match format.next_packet() {
            Ok(p) => p,
            Err(SymError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(bad(format!("reading a packet: {e}"))),
        };
        if packet.track_id() != track_id {
            continue;
        }
        let buf = decoder.decode(&packet).map_err(|e| bad(format!("decoding: {e}")))?;
        let spec = *buf.spec();
        channels = spec.channels.count();
        let mut out = SampleBuffer::<f32>::new(buf.capacity() as u64, spec);
        out.copy_interleaved_ref(buf);
        samples.extend_from_slice(out.samples());
        AUDIO_SAMPLES.check(samples.len() as u64, "decoding this file").map_err(&bad)?;
    }
    let audio = Audio { samples, channels: channels.max(1), sample_rate };
    match promised {
        Some(n) if (audio.frames() as u64) < n => Err(bad(format!(
            "truncated: the header promises {n} frames but the file holds {}",
            audio.frames()
        ))),
        _ => Ok(audio),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A 16-bit PCM WAV of `frames` frames of `channels` channels (channel k holds k / 10).
    pub(crate) fn wav_bytes(channels: u16, rate: u32, frames: usize) -> Vec<u8> {
        let data_len = frames * channels as usize * 2;
        let mut b = Vec::with_capacity(44 + data_len);
        b.extend_from_slice(b"RIFF");
        b.extend_from_slice(&(36 + data_len as u32).to_le_bytes());
        b.extend_from_slice(b"WAVEfmt ");
        b.extend_from_slice(&16u32.to_le_bytes());
        b.extend_from_slice(&1u16.to_le_bytes());
        b.extend_from_slice(&channels.to_le_bytes());
        b.extend_from_slice(&rate.to_le_bytes());
        b.extend_from_slice(&(rate * u32::from(channels) * 2).to_le_bytes());
        b.extend_from_slice(&(channels * 2).to_le_bytes());
        b.extend_from_slice(&16u16.to_le_bytes());
        b.extend_from_slice(b"data");
        b.extend_from_slice(&(data_len as u32).to_le_bytes());
        for _ in 0..frames {
            for c in 0..channels {
                b.extend_from_slice(&((f32::from(c) / 10.0 * 32767.0) as i16).to_le_bytes());
            }
        }
        b
    }

    pub(crate) fn fixture(name: &str) -> std::path::PathBuf {
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/audio").join(name)
    }

    #[test]
    fn decodes_the_speech_fixture() {
        let a = decode_file(fixture("speech_16k.wav")).unwrap();
        assert_eq!((a.channels, a.sample_rate, a.frames()), (1, 16000, 17526));
    }

    #[test]
    fn flac_ogg_and_mp3_decode_to_the_same_speech() {
        let wav = decode_file(fixture("speech_16k.wav")).unwrap().to_mono();
        // FLAC is lossless; Vorbis and MP3 are lossy (and MP3 adds encoder delay), so
        // compare energy and, for FLAC, the samples.
        let energy = |x: &[f32]| x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32;
        for (ext, exact) in [("flac", true), ("ogg", false), ("mp3", false)] {
            let a = decode_file(fixture(&format!("speech_16k.{ext}"))).unwrap();
            assert_eq!((a.channels, a.sample_rate), (1, 16000), "{ext}");
            let m = a.to_mono();
            assert!(
                m.len().abs_diff(wav.len()) < 2000,
                "{ext}: {} vs {} samples",
                m.len(),
                wav.len()
            );
            let ratio = energy(&m) / energy(&wav);
            assert!((0.8..1.2).contains(&ratio), "{ext}: energy ratio {ratio}");
            if exact {
                assert_eq!(m, wav, "{ext}");
            }
        }
    }

    #[test]
    fn truncated_and_empty_wavs_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let full = wav_bytes(2, 8000, 4000);
        let cut = dir.path().join("cut.wav");
        std::fs::write(&cut, &full[..full.len() / 2]).unwrap();
        let e = decode_file(&cut).unwrap_err().to_string();
        assert!(e.contains("truncated: the header promises 4000 frames but the file holds"), "{e}");
        let empty = dir.path().join("empty.wav");
        std::fs::write(&empty, wav_bytes(1, 16000, 0)).unwrap();
        let e = decode_file(&empty).unwrap_err().to_string();
        assert!(e.contains("no audio samples (zero-length audio)"), "{e}");
        let zero = dir.path().join("zero.wav");
        std::fs::write(&zero, b"").unwrap();
        assert!(decode_file(&zero).unwrap_err().to_string().contains("not a readable audio file"));
    }

    /// A mono 32-bit float WAV (format tag 3) holding `samples`.
    pub(crate) fn float_wav_bytes(samples: &[f32], rate: u32) -> Vec<u8> {
        let data_len = samples.len() as u32 * 4;
        let mut b = b"RIFF".to_vec();
        b.extend_from_slice(&(36 + data_len).to_le_bytes());
        b.extend_from_slice(b"WAVEfmt ");
        for v in
            [16u32.to_le_bytes().to_vec(), 3u16.to_le_bytes().to_vec(), 1u16.to_le_bytes().to_vec()]
        {
            b.extend_from_slice(&v);
        }
        b.extend_from_slice(&rate.to_le_bytes());
        b.extend_from_slice(&(rate * 4).to_le_bytes());
        b.extend_from_slice(&4u16.to_le_bytes());
        b.extend_from_slice(&32u16.to_le_bytes());
        b.extend_from_slice(b"data");
        b.extend_from_slice(&data_len.to_le_bytes());
        samples.iter().for_each(|x| b.extend_from_slice(&x.to_le_bytes()));
        b
    }

    #[test]
    fn panic_wav_sample_rate_zero() {
        let dir = tempfile::tempdir().unwrap();
        let with_rate = |rate: u32| {
            let mut b = wav_bytes(1, 16_000, 100);
            b[24..28].copy_from_slice(&rate.to_le_bytes());
            b
        };
        let with_channels = |channels: u16| {
            let mut b = wav_bytes(1, 16_000, 128);
            b[22..24].copy_from_slice(&channels.to_le_bytes());
            b
        };
        // A LIST chunk before `fmt ` is still looked past.
        let mut listed = wav_bytes(1, 0, 100);
        listed.splice(12..12, b"LIST\x03\x00\x00\x00abc\x00".iter().copied());
        let cases = [
            ("rate0.wav", with_rate(0), "sample rate of 0 Hz"),
            (
                "rate_huge.wav",
                with_rate(u32::MAX),
                "sample rate of 4294967295 Hz, above the 1000000 Hz accepted",
            ),
            ("listed.wav", listed, "sample rate of 0 Hz"),
            ("ch0.wav", with_channels(0), "0 channels"),
            ("ch64.wav", with_channels(64), "64 channels: the WAV reader handles at most 32"),
        ];
        for (name, bytes, want) in cases {
            let p = dir.path().join(name);
            std::fs::write(&p, bytes).unwrap();
            let e = decode_file(&p).unwrap_err().to_string();
            assert!(e.contains(name) && e.contains(want) && !e.contains('\n'), "{e}");
        }
        let p = dir.path().join("ok.wav");
        std::fs::write(&p, with_rate(1_000_000)).unwrap();
        assert_eq!(decode_file(&p).unwrap().sample_rate, 1_000_000);
    }

    #[test]
    fn nan_wav_float_samples() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("fine.wav");
        std::fs::write(&p, float_wav_bytes(&[0.0, 0.5, -0.25], 8000)).unwrap();
        assert_eq!(decode_file(&p).unwrap().samples, [0.0, 0.5, -0.25]);
        for (name, x) in
            [("nan.wav", f32::NAN), ("inf.wav", f32::INFINITY), ("neginf.wav", f32::NEG_INFINITY)]
        {
            let p = dir.path().join(name);
            std::fs::write(&p, float_wav_bytes(&[0.0, 0.5, x, 0.1], 8000)).unwrap();
            let e = decode_file(&p).unwrap_err().to_string();
            assert!(
                e.contains(name) && e.contains("frame 2, channel 0, is not a finite number"),
                "{e}"
            );
        }
    }

    #[test]
    fn bytes_decode_as_files_do() {
        let speech = fixture("speech_16k.wav");
        let bytes = std::fs::read(&speech).unwrap();
        assert_eq!(
            decode_bytes(bytes, Path::new("upload")).unwrap(),
            decode_file(&speech).unwrap()
        );
        let e = decode_bytes(wav_bytes(1, 0, 10), Path::new("upload")).unwrap_err().to_string();
        assert!(e.contains("upload") && e.contains("0 Hz"), "{e}");
        let e = decode_bytes(b"not audio".to_vec(), Path::new("upload")).unwrap_err().to_string();
        assert!(e.contains("upload") && e.contains("not a readable audio file"), "{e}");
    }

    #[test]
    fn downmixes_channels() {
        let a = Audio { samples: vec![0.0, 1.0, 0.5, 0.5], channels: 2, sample_rate: 8000 };
        assert_eq!(a.to_mono(), [0.5, 0.5]);
    }
}
