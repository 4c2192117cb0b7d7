//! Band-limited resampling with rubato's windowed-sinc `SincFixedIn` (Smith, "Digital Audio
//! Resampling"), aligned so that output sample `k` sits at time `k / to` (an impulse at
//! input `n` peaks at output `n * to / from`; tested for 5 rate pairs).

use braid_core::limits::AUDIO_SAMPLES;
use braid_core::{Error, Result};
use rubato::{
    Resampler, SincFixedIn, SincInterpolationParameters, SincInterpolationType, WindowFunction,
};

/// Input frames per rubato call.
const CHUNK: usize = 4096;

use super::MAX_SAMPLE_RATE;

/// Mono `x` at `from` Hz -> `round(len * to / from)` samples at `to` Hz. Both rates must
/// be in `1..=MAX_SAMPLE_RATE` (the alignment zeros grow with the rates' ratio) and the
/// output within [`AUDIO_SAMPLES`].
pub fn resample(x: &[f32], from: u32, to: u32) -> Result<Vec<f32>> {
    if from == 0 || to == 0 || from > MAX_SAMPLE_RATE || to > MAX_SAMPLE_RATE {
        return Err(Error::Invalid(format!(
            "cannot resample from {from} Hz to {to} Hz (rates must be in 1..={MAX_SAMPLE_RATE} Hz)"
        )));
    }
    if from == to || x.is_empty() {
        return Ok(x.to_vec());
    }
    let out_len = (x.len() as f64 * f64::from(to) / f64::from(from)).round();
    let what = format!("resampling {} samples from {from} Hz to {to} Hz", x.len());
    // `as` saturates: a length past u64 is over the limit as u64::MAX.
    AUDIO_SAMPLES.check(out_len as u64, &what).map_err(Error::Invalid)?;
    let err =
        |e: &dyn std::fmt::Display| Error::Invalid(format!("resampling {from} Hz -> {to} Hz: {e}"));
    let ratio = f64::from(to) / f64::from(from);
    let params = SincInterpolationParameters {
        sinc_len: 256,
        f_cutoff: 0.95,
        interpolation: SincInterpolationType::Cubic,
        oversampling_factor: 128,
        window: WindowFunction::BlackmanHarris2,
    };
    let mut r = SincFixedIn::<f32>::new(ratio, 1.0, params, CHUNK, 1).map_err(|e| err(&e))?;
    // rubato's output k sits at input time (k + 1) / ratio - 1. With `lead` zeros in front
    // and the first `skip` outputs dropped, output k sits at k / ratio exactly.
    let g = gcd(from, to);
    let (lead, skip) = ((from / g - 1) as usize, (to / g - 1) as usize);
    let want = (x.len() as f64 * ratio).round() as usize;
    let mut input = vec![0f32; lead];
    input.extend_from_slice(x);
    let mut out = Vec::with_capacity(want + skip + CHUNK);
    let mut chunks = input.chunks_exact(CHUNK);
    for chunk in chunks.by_ref() {
        out.extend_from_slice(&r.process(&[chunk], None).map_err(|e| err(&e))?[0]);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        out.extend_from_slice(&r.process_partial(Some(&[rest]), None).map_err(|e| err(&e))?[0]);
    }
    while out.len() < want + skip {
        out.extend_from_slice(&r.process_partial::<&[f32]>(None, None).map_err(|e| err(&e))?[0]);
    }
    Ok(out[skip..skip + want].to_vec())
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(rate: u32, n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (2.0 * std::f64::consts::PI * 440.0 * i as f64 / f64::from(rate)).sin() as f32)
            .collect()
    }

    #[test]
    fn a_sine_survives_96k_to_16k() {
        let y = resample(&sine(96_000, 96_000 / 4), 96_000, 16_000).unwrap();
        assert_eq!(y.len(), 4000);
        let want = sine(16_000, 4000);
        // Away from the edges, where the filter sees zeros beyond the signal.
        let err = y[200..3800]
            .iter()
            .zip(&want[200..3800])
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(err < 2e-3, "max error {err}");
    }

    #[test]
    fn an_impulse_lands_at_its_time_for_every_rate_pair() {
        for (from, to) in [
            (96_000u32, 16_000u32),
            (48_000, 16_000),
            (44_100, 16_000),
            (22_050, 16_000),
            (8_000, 16_000),
        ] {
            let mut x = vec![0f32; from as usize / 4];
            x[from as usize / 8] = 1.0;
            let y = resample(&x, from, to).unwrap();
            let peak = y
                .iter()
                .enumerate()
                .fold((0, 0f32), |m, (i, &v)| if v > m.1 { (i, v) } else { m })
                .0;
            assert_eq!(peak, to as usize / 8, "{from} -> {to}");
        }
    }

    #[test]
    fn same_rate_is_a_copy_and_zero_rate_an_error() {
        assert_eq!(resample(&[1.0, 2.0], 16_000, 16_000).unwrap(), [1.0, 2.0]);
        assert!(resample(&[1.0], 0, 16_000).is_err());
    }

    #[test]
    fn alloc_resample_absurd_rates() {
        // 4.29 GHz -> 16 kHz needed 4.29e9 alignment zeros (17 GB).
        let e = resample(&[0.5; 64], u32::MAX, 16_000).unwrap_err().to_string();
        assert!(e.contains("4294967295 Hz") && e.contains("1..=1000000 Hz"), "{e}");
        // 1 Hz -> 1 MHz of ten minutes' worth of samples: 6e11 outputs.
        let e = resample(&vec![0.0; 600_000], 1, 1_000_000).unwrap_err().to_string();
        assert!(
            e.contains("needs 600000000000 samples") && e.contains("BRAID_MAX_AUDIO_SAMPLES"),
            "{e}"
        );
    }
}
