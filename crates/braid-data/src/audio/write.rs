//! Mono 16-bit PCM WAV encoding (what generators write).

/// samples in [-1, 1] (clipped) at `rate` Hz -> the bytes of a mono 16-bit PCM WAV file.
pub fn encode_wav_pcm16(samples: &[f32], rate: u32) -> Vec<u8> {
    let data_len = (samples.len() * 2) as u32;
    let mut b = Vec::with_capacity(44 + samples.len() * 2);
    b.extend_from_slice(b"RIFF");
    b.extend_from_slice(&(36 + data_len).to_le_bytes());
    b.extend_from_slice(b"WAVEfmt ");
    b.extend_from_slice(&16u32.to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes()); // PCM
    b.extend_from_slice(&1u16.to_le_bytes()); // mono
    b.extend_from_slice(&rate.to_le_bytes());
    b.extend_from_slice(&(rate * 2).to_le_bytes());
    b.extend_from_slice(&2u16.to_le_bytes());
    b.extend_from_slice(&16u16.to_le_bytes());
    b.extend_from_slice(b"data");
    b.extend_from_slice(&data_len.to_le_bytes());
    for &s in samples {
        let v = if s.is_finite() { (s.clamp(-1.0, 1.0) * 32767.0).round() as i16 } else { 0 };
        b.extend_from_slice(&v.to_le_bytes());
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::decode::decode_bytes;
    use std::path::Path;

    #[test]
    fn round_trips_through_the_decoder() {
        let samples: Vec<f32> = (0..400).map(|i| (i as f32 * 0.05).sin() * 0.8).collect();
        let bytes = encode_wav_pcm16(&samples, 16_000);
        let audio = decode_bytes(bytes, Path::new("x.wav")).unwrap();
        assert_eq!(audio.frames(), 400);
        let back = audio.to_mono();
        let err = samples.iter().zip(&back).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(err < 1e-4, "{err}");
    }
}
