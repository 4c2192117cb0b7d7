//! Short-time power spectrum with a periodic Hann window and centred, reflect-padded
//! frames, as `transformers.audio_utils.spectrogram(..., center=True, pad_mode="reflect",
//! power=2.0)` and `torch.stft(center=True)` compute it; in f64 with realfft.

use braid_core::{Error, Result};
use realfft::RealFftPlanner;

/// `|FFT(frame * hann)|^2` of each frame: `frames * (n_fft / 2 + 1)` values, row-major,
/// with `frames = 1 + len / hop` (the signal is reflect-padded by `n_fft / 2` each side).
pub fn power_spectrogram(x: &[f32], n_fft: usize, hop: usize) -> Result<(Vec<f64>, usize)> {
    let pad = n_fft / 2;
    if hop == 0 || n_fft < 2 {
        return Err(Error::Invalid(format!("bad STFT: n_fft {n_fft}, hop {hop}")));
    }
    if x.len() <= pad {
        return Err(Error::Invalid(format!(
            "{} samples is too short for a centred {n_fft}-point STFT",
            x.len()
        )));
    }
    let padded = reflect_pad(x, pad);
    let frames = 1 + (padded.len() - n_fft) / hop;
    let bins = n_fft / 2 + 1;
    let window: Vec<f64> = (0..n_fft)
        .map(|n| 0.5 - 0.5 * (2.0 * std::f64::consts::PI * n as f64 / n_fft as f64).cos())
        .collect();
    let fft = RealFftPlanner::<f64>::new().plan_fft_forward(n_fft);
    let (mut buf, mut spec) = (fft.make_input_vec(), fft.make_output_vec());
    let mut out = Vec::with_capacity(frames * bins);
    for f in 0..frames {
        let frame = &padded[f * hop..f * hop + n_fft];
        for ((b, &s), &w) in buf.iter_mut().zip(frame).zip(&window) {
            *b = s * w;
        }
        fft.process(&mut buf, &mut spec).map_err(|e| Error::Invalid(format!("FFT: {e}")))?;
        out.extend(spec.iter().map(|c| c.norm_sqr()));
    }
    Ok((out, frames))
}

/// numpy's `pad(mode="reflect")`: the edge sample is not repeated.
fn reflect_pad(x: &[f32], pad: usize) -> Vec<f64> {
    let n = x.len();
    let left = (1..=pad).rev().map(|i| x[i]);
    let right = (0..pad).map(|i| x[n - 2 - i]);
    left.chain(x.iter().copied()).chain(right).map(f64::from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reflect_padding_matches_numpy() {
        let p = reflect_pad(&[1.0, 2.0, 3.0, 4.0], 2);
        assert_eq!(p, [3.0, 2.0, 1.0, 2.0, 3.0, 4.0, 3.0, 2.0]);
    }

    #[test]
    fn a_bin_centred_sine_peaks_in_its_bin() {
        // 16 cycles over a 64-point frame land exactly in bin 16.
        let x: Vec<f32> =
            (0..256).map(|i| (2.0 * std::f32::consts::PI * 16.0 * i as f32 / 64.0).sin()).collect();
        let (spec, frames) = power_spectrogram(&x, 64, 16).unwrap();
        assert_eq!(frames, 17);
        let row = &spec[8 * 33..9 * 33];
        let peak =
            row.iter().enumerate().fold((0, 0.0), |m, (i, &v)| if v > m.1 { (i, v) } else { m });
        assert_eq!(peak.0, 16);
        assert!(power_spectrogram(&x[..10], 64, 16).is_err());
    }
}
