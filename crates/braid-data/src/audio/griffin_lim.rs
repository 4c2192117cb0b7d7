//! Back from spectrograms to waveforms, for generators that produce mel spectrograms
//! (AudioLDM-style) without a neural vocoder: a mel-to-linear inversion (non-negative,
//! by multiplicative updates, the least-squares solution torchaudio's `InverseMelScale`
//! approximates) and fast Griffin-Lim (Griffin & Lim 1984; Perraudin et al. 2013, momentum
//! 0.99 as `torchaudio.transforms.GriffinLim`), over the centred, Hann-windowed STFT of
//! [`super::power_spectrogram`]. In f64 with realfft.

use braid_core::{Error, Result};
use realfft::num_complex::Complex;
use realfft::RealFftPlanner;

fn hann(n_fft: usize) -> Vec<f64> {
    (0..n_fft)
        .map(|n| 0.5 - 0.5 * (2.0 * std::f64::consts::PI * n as f64 / n_fft as f64).cos())
        .collect()
}

fn check(n_fft: usize, hop: usize) -> Result<()> {
    if n_fft < 4 || n_fft % 2 != 0 || hop == 0 || hop > n_fft / 2 {
        return Err(Error::Invalid(format!(
            "bad STFT: n_fft {n_fft} (even, >= 4), hop {hop} (1 to n_fft / 2)"
        )));
    }
    Ok(())
}

/// Centred (reflect-padded by `n_fft / 2`), Hann-windowed complex STFT: `frames * bins`.
fn stft(x: &[f64], n_fft: usize, hop: usize) -> Result<(Vec<Complex<f64>>, usize)> {
    let pad = n_fft / 2;
    if x.len() <= pad {
        return Err(Error::Invalid(format!("{} samples is too short for the STFT", x.len())));
    }
    let n = x.len();
    let padded: Vec<f64> = (1..=pad)
        .rev()
        .map(|i| x[i])
        .chain(x.iter().copied())
        .chain((0..pad).map(|i| x[n - 2 - i]))
        .collect();
    let frames = 1 + (padded.len() - n_fft) / hop;
    let window = hann(n_fft);
    let fft = RealFftPlanner::<f64>::new().plan_fft_forward(n_fft);
    let (mut buf, mut spec) = (fft.make_input_vec(), fft.make_output_vec());
    let mut out = Vec::with_capacity(frames * spec.len());
    for f in 0..frames {
        for (i, b) in buf.iter_mut().enumerate() {
            *b = padded[f * hop + i] * window[i];
        }
        fft.process(&mut buf, &mut spec).map_err(|e| Error::Invalid(format!("FFT: {e}")))?;
        out.extend_from_slice(&spec);
    }
    Ok((out, frames))
}

/// Inverse of [`stft`] by windowed overlap-add, normalised by the summed squared window;
/// `len` samples.
fn istft(
    spec: &[Complex<f64>],
    frames: usize,
    n_fft: usize,
    hop: usize,
    len: usize,
) -> Result<Vec<f64>> {
    let bins = n_fft / 2 + 1;
    let window = hann(n_fft);
    let ifft = RealFftPlanner::<f64>::new().plan_fft_inverse(n_fft);
    let (mut buf, mut time) = (ifft.make_input_vec(), ifft.make_output_vec());
    let total = n_fft + hop * (frames - 1);
    let (mut acc, mut norm) = (vec![0f64; total], vec![0f64; total]);
    for f in 0..frames {
        buf.copy_from_slice(&spec[f * bins..(f + 1) * bins]);
        // A real signal's DC and Nyquist bins are real.
        buf[0].im = 0.0;
        buf[bins - 1].im = 0.0;
        ifft.process(&mut buf, &mut time).map_err(|e| Error::Invalid(format!("IFFT: {e}")))?;
        for i in 0..n_fft {
            acc[f * hop + i] += time[i] / n_fft as f64 * window[i];
            norm[f * hop + i] += window[i] * window[i];
        }
    }
    let pad = n_fft / 2;
    Ok((0..len)
        .map(|i| {
            let j = i + pad;
            if j < total && norm[j] > 1e-11 {
                acc[j] / norm[j]
            } else {
                0.0
            }
        })
        .collect())
}

/// A waveform of `len` samples whose STFT magnitude approximates `magnitude`
/// (`frames * (n_fft / 2 + 1)`, row-major, as [`super::power_spectrogram`]'s square root),
/// by `iters` rounds of fast Griffin-Lim from a deterministic phase.
pub fn griffin_lim(
    magnitude: &[f64],
    n_fft: usize,
    hop: usize,
    len: usize,
    iters: usize,
) -> Result<Vec<f32>> {
    check(n_fft, hop)?;
    let bins = n_fft / 2 + 1;
    if magnitude.is_empty() || magnitude.len() % bins != 0 {
        return Err(Error::Invalid(format!(
            "a magnitude of {} values is not frames x {bins} bins",
            magnitude.len()
        )));
    }
    let frames = magnitude.len() / bins;
    if len + 2 * (n_fft / 2) < n_fft || 1 + (len + 2 * (n_fft / 2) - n_fft) / hop != frames {
        return Err(Error::Invalid(format!(
            "{frames} frames do not cover {len} samples at hop {hop}"
        )));
    }
    if magnitude.iter().any(|m| !m.is_finite() || *m < 0.0) {
        return Err(Error::Invalid("the magnitude holds a negative or non-finite value".into()));
    }
    // Phase from a fixed pseudo-random sequence, so the same spectrogram gives the same audio.
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut spec: Vec<Complex<f64>> = magnitude
        .iter()
        .map(|&m| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let a = (state >> 11) as f64 / (1u64 << 53) as f64 * std::f64::consts::TAU;
            Complex::from_polar(m, a)
        })
        .collect();
    let mut prev = spec.clone();
    let momentum = 0.99;
    let mut x = istft(&spec, frames, n_fft, hop, len)?;
    for _ in 0..iters {
        let (rebuilt, _) = stft(&x, n_fft, hop)?;
        for ((s, p), (r, &m)) in
            spec.iter_mut().zip(prev.iter_mut()).zip(rebuilt.iter().zip(magnitude))
        {
            // Fast Griffin-Lim: extrapolate the projection, keep its phase, impose |S| = m.
            let accel = r + (r - *p) * (momentum / (1.0 + momentum));
            *p = *r;
            let norm = accel.norm();
            *s = if norm > 1e-16 { accel * (m / norm) } else { Complex::new(m, 0.0) };
        }
        x = istft(&spec, frames, n_fft, hop, len)?;
    }
    Ok(x.into_iter().map(|v| v as f32).collect())
}

/// Linear power spectra (`frames * n_freqs`) whose mel projection by `filters`
/// (`n_mels * n_freqs`, [`super::mel_filter_bank`]) approximates `mel` (`frames *
/// n_mels`): the non-negative least-squares solution by `iters` multiplicative updates.
pub fn mel_to_linear(
    mel: &[f64],
    filters: &[f64],
    n_mels: usize,
    iters: usize,
) -> Result<Vec<f64>> {
    if n_mels == 0 || filters.len() % n_mels != 0 || mel.len() % n_mels != 0 {
        return Err(Error::Invalid(format!(
            "mel inversion: {} filter values and {} mel values for {n_mels} mels",
            filters.len(),
            mel.len()
        )));
    }
    let n_freqs = filters.len() / n_mels;
    let frames = mel.len() / n_mels;
    let mut out = Vec::with_capacity(frames * n_freqs);
    for f in 0..frames {
        let m = &mel[f * n_mels..(f + 1) * n_mels];
        // F^T m, the numerator of every update.
        let ftm: Vec<f64> = (0..n_freqs)
            .map(|k| (0..n_mels).map(|j| filters[j * n_freqs + k] * m[j].max(0.0)).sum())
            .collect();
        let mut s: Vec<f64> = ftm.iter().map(|v| v.max(1e-12)).collect();
        for _ in 0..iters {
            let fs: Vec<f64> = (0..n_mels)
                .map(|j| (0..n_freqs).map(|k| filters[j * n_freqs + k] * s[k]).sum())
                .collect();
            for (k, sk) in s.iter_mut().enumerate() {
                let den: f64 = (0..n_mels).map(|j| filters[j * n_freqs + k] * fs[j]).sum();
                if den > 1e-300 {
                    *sk *= ftm[k] / den;
                }
            }
        }
        out.extend(s);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::{mel_filter_bank, power_spectrogram};

    fn magnitude(x: &[f32], n_fft: usize, hop: usize) -> Vec<f64> {
        power_spectrogram(x, n_fft, hop).unwrap().0.into_iter().map(f64::sqrt).collect()
    }

    /// ||S(y)| - |S(x)|| / ||S(x)||
    fn spectral_error(x: &[f32], y: &[f32], n_fft: usize, hop: usize) -> f64 {
        let (a, b) = (magnitude(x, n_fft, hop), magnitude(y, n_fft, hop));
        let num: f64 = a.iter().zip(&b).map(|(p, q)| (p - q).powi(2)).sum();
        let den: f64 = a.iter().map(|p| p * p).sum();
        (num / den).sqrt()
    }

    fn chirp(n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| {
                let t = i as f64 / 16_000.0;
                (0.5 * (std::f64::consts::TAU * (300.0 * t + 800.0 * t * t)).sin()
                    + 0.2 * (std::f64::consts::TAU * 1200.0 * t).sin()) as f32
            })
            .collect()
    }

    #[test]
    fn the_inverse_stft_rebuilds_the_signal_exactly() {
        let x = chirp(2000);
        let xs: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
        let (spec, frames) = stft(&xs, 256, 64).unwrap();
        let y = istft(&spec, frames, 256, 64, x.len()).unwrap();
        let err = xs.iter().zip(&y).map(|(a, b)| (a - b).abs()).fold(0f64, f64::max);
        assert!(err < 1e-9, "{err}");
    }

    #[test]
    fn griffin_lim_recovers_a_waveform_with_that_magnitude() {
        let x = chirp(8000);
        let mag = magnitude(&x, 256, 64);
        let few = griffin_lim(&mag, 256, 64, x.len(), 2).unwrap();
        let many = griffin_lim(&mag, 256, 64, x.len(), 60).unwrap();
        let (e_few, e_many) =
            (spectral_error(&x, &few, 256, 64), spectral_error(&x, &many, 256, 64));
        assert!(e_many < 0.15 && e_many < e_few, "spectral error {e_few} -> {e_many}");
        assert_eq!(many, griffin_lim(&mag, 256, 64, x.len(), 60).unwrap(), "deterministic");
        assert!(griffin_lim(&mag[..100], 256, 64, x.len(), 1).is_err());
        assert!(griffin_lim(&mag, 256, 64, x.len() + 640, 1).is_err());
        assert!(griffin_lim(&mag, 255, 64, x.len(), 1).is_err());
    }

    #[test]
    fn mel_inversion_reproduces_the_mel_spectrum() {
        let x = chirp(4000);
        let (power, frames) = power_spectrogram(&x, 256, 64).unwrap();
        let fb = mel_filter_bank(129, 40, 0.0, 8000.0, 16_000);
        let fb = fb.as_slice();
        let mel = |p: &[f64]| -> Vec<f64> {
            (0..frames)
                .flat_map(|f| {
                    (0..40).map(move |j| {
                        (0..129).map(|k| fb[j * 129 + k] * p[f * 129 + k]).sum::<f64>()
                    })
                })
                .collect()
        };
        let m = mel(&power);
        let lin = mel_to_linear(&m, fb, 40, 200).unwrap();
        assert!(lin.iter().all(|v| *v >= 0.0));
        let back = mel(&lin);
        let num: f64 = m.iter().zip(&back).map(|(a, b)| (a - b).powi(2)).sum();
        let den: f64 = m.iter().map(|a| a * a).sum();
        assert!((num / den).sqrt() < 0.05, "{}", (num / den).sqrt());
        assert!(mel_to_linear(&m, &fb[..10], 40, 1).is_err());
    }
}
