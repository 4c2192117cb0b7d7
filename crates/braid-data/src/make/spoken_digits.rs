//! Spoken digits: "zero" to "nine" said by the system's espeak-ng (github.com/espeak-ng)
//! over [`ACCENTS`] x voice variants, at random speeds (120-200 words a minute) and pitches
//! (20-80), then resampled by sox to 16 kHz mono, trimmed of silence, normalised to -3 dB,
//! delayed by 50-200 ms and padded or cut to one second, and mixed (`sox -m`) with white,
//! pink or brown noise at an amplitude of 0.003 to 0.06 (log-uniform). Written as
//! `audio/<split>_<NNNNN>_<voice>.wav` (16-bit PCM), with one question a clip.
//!
//! The split is by voice: training clips use [`TRAIN_VARIANTS`], test clips
//! [`TEST_VARIANTS`] (four male, four female and three other voices), each over every accent,
//! so no test voice is heard in training. The voice is the clip name's last field, so the
//! sample ids say it (`test_00003_en-us+m3_digit`). Digits are balanced within each split.
//! Every choice comes from the seed; the sox calls run in repeatable mode (`-R`), so a
//! seed gives the same audio on the same espeak-ng and sox. Install both with
//! `apt-get install espeak-ng sox`.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use braid_core::{Error, Result};

use super::rng::Rng;
use super::tools::{self, arg};
use super::{ask, prepare, write_splits, Made, Splits};
use crate::conversation::NewSample;

/// The answers: the digit words.
pub const DIGITS: [&str; 10] =
    ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"];

/// espeak-ng's English voices (`espeak-ng --voices=en`, the non-MBROLA ones that differ
/// from each other) with the accent a caption names. `en` is British English; `en-gb` takes
/// no variants in espeak-ng 1.51, and `en-us-nyc` sounds like `en-us` on these words.
pub const ACCENTS: [(&str, &str); 7] = [
    ("en", "a British"),
    ("en-us", "an American"),
    ("en-gb-scotland", "a Scottish"),
    ("en-gb-x-gbclan", "a Lancashire"),
    ("en-gb-x-rp", "a Received Pronunciation"),
    ("en-gb-x-gbcwmd", "a West Midlands"),
    ("en-029", "a Caribbean"),
];

/// The voice variants (`espeak-ng --voices=variant`) of the training split. Left out of
/// both splits: `caleb` (the same as `klatt`), whispers, croaks and robots.
pub const TRAIN_VARIANTS: [&str; 35] = [
    "m1", "m2", "m4", "m5", "m6", "m8", "f1", "f3", "f4", "Andy", "Annie", "adam", "aunty",
    "belinda", "benjamin", "boris", "david", "ed", "edward", "grandpa", "iven", "john", "linda",
    "max", "norbert", "paul", "pedro", "quincy", "rob", "steph", "travis", "zac", "klatt",
    "klatt2", "klatt3",
];

/// The voice variants of the test split, never used in training.
pub const TEST_VARIANTS: [&str; 11] =
    ["m3", "m7", "Alex", "robert", "f2", "f5", "anika", "grandma", "michel", "victor", "klatt4"];

/// The sample rate of the clips.
pub const SAMPLE_RATE: u32 = 16_000;

/// At most this many clips per split (the clip number has five digits).
pub const MAX_CLIPS: usize = 99_999;

const DIGIT_QUESTIONS: [&str; 5] = [
    "What number is spoken?",
    "Which digit does the speaker say?",
    "What number do you hear?",
    "Which number is said in this recording?",
    "What digit is spoken in the audio?",
];

const CAPTION_REQUESTS: [&str; 3] =
    ["Describe the audio.", "Describe this recording.", "What can be heard in this clip?"];

const NOISES: [&str; 3] = ["whitenoise", "pinknoise", "brownnoise"];

/// Noise clips made per dataset: one second each, cut from 30 s of noise at offsets drawn
/// from the seed (sox's repeatable mode would otherwise give every clip the same noise).
const NOISE_POOL: usize = 24;

/// How many clips of each split, and how they are made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpokenDigitsOptions {
    /// Training clips (each with a question and a caption).
    pub train: usize,
    /// Test clips.
    pub test: usize,
    /// Chooses every random property of the clips and the phrasings.
    pub seed: u64,
    /// Clips made at once; 0: one per core.
    pub jobs: usize,
    /// Write over the dataset in a folder that is not empty.
    pub force: bool,
}

impl Default for SpokenDigitsOptions {
    /// 2,000 training and 300 test clips, on every core.
    fn default() -> Self {
        Self { train: 2000, test: 300, seed: 0, jobs: 0, force: false }
    }
}

/// Which split a clip belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Split {
    /// Voices of [`TRAIN_VARIANTS`].
    Train,
    /// Voices of [`TEST_VARIANTS`].
    Test,
}

impl Split {
    /// `train` or `test`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Train => "train",
            Self::Test => "test",
        }
    }
}

/// One clip to synthesise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clip {
    /// `train_00017_en-us+m1`: the split, the clip number, the voice.
    pub name: String,
    /// Its split.
    pub split: Split,
    /// Index in [`DIGITS`].
    pub digit: usize,
    /// Index in [`ACCENTS`].
    pub accent: usize,
    /// The voice variant.
    pub variant: &'static str,
    /// Words a minute (`espeak-ng -s`).
    pub speed: u32,
    /// Pitch, 0-99 (`espeak-ng -p`).
    pub pitch: u32,
    /// Silence before the word, in ms.
    pub lead_ms: u32,
    /// The noise clip mixed in.
    pub noise: usize,
    /// Its amplitude, in thousandths.
    pub noise_milli: u32,
}

impl Clip {
    /// The espeak-ng voice: `en-us+m1`.
    pub fn voice(&self) -> String {
        format!("{}+{}", ACCENTS[self.accent].0, self.variant)
    }
}

/// Every clip of both splits, training first; the same options give the same plan.
pub fn plan(opts: &SpokenDigitsOptions) -> Result<Vec<Clip>> {
    for (field, n) in [("train", opts.train), ("test", opts.test)] {
        if n == 0 || n > MAX_CLIPS {
            return Err(Error::config(field, format!("{n} clips; want 1 to {MAX_CLIPS}")));
        }
    }
    let mut clips = Vec::with_capacity(opts.train + opts.test);
    let splits: [(Split, usize, &'static [&'static str]); 2] =
        [(Split::Train, opts.train, &TRAIN_VARIANTS), (Split::Test, opts.test, &TEST_VARIANTS)];
    for (split, n, variants) in splits {
        let mut rng = Rng::keyed(opts.seed, split.as_str());
        let mut digits: Vec<usize> = (0..n).map(|i| i % DIGITS.len()).collect();
        rng.shuffle(&mut digits);
        for (i, digit) in digits.into_iter().enumerate() {
            let accent = rng.below(ACCENTS.len());
            let variant = rng.pick(variants).copied().unwrap_or_default();
            let mut clip = Clip {
                name: String::new(),
                split,
                digit,
                accent,
                variant,
                speed: rng.between(120, 200),
                pitch: rng.between(20, 80),
                lead_ms: rng.between(50, 200),
                noise: rng.below(NOISE_POOL),
                noise_milli: (3.0 * 20f64.powf(rng.unit())).round() as u32,
            };
            clip.name = format!("{}_{i:05}_{}", split.as_str(), clip.voice());
            clips.push(clip);
        }
    }
    Ok(clips)
}

/// The conversation samples of the plan.
fn samples(clips: &[Clip], seed: u64) -> Splits {
    let mut splits = Splits::default();
    for clip in clips {
        let file = format!("audio/{}.wav", clip.name);
        let with_audio = |mut s: NewSample| {
            s.audio = vec![file.clone()];
            s
        };
        let id = format!("{}_digit", clip.name);
        let question = Rng::keyed(seed, &id).pick(&DIGIT_QUESTIONS).copied().unwrap_or_default();
        let (split, captions) = splits.of(clip.split == Split::Train);
        split.push(with_audio(ask(id, "<audio>", question, DIGITS[clip.digit])));
        let id = format!("{}_caption", clip.name);
        let request = Rng::keyed(seed, &id).pick(&CAPTION_REQUESTS).copied().unwrap_or_default();
        let caption =
            format!("a voice with {} accent saying {}", ACCENTS[clip.accent].1, DIGITS[clip.digit]);
        captions.push(with_audio(ask(id, "<audio>", request, &caption)));
    }
    splits
}

/// Synthesises the clips of `opts` into `dir` (see the module's documentation).
pub fn make_spoken_digits(dir: &Path, opts: &SpokenDigitsOptions) -> Result<Made> {
    let clips = plan(opts)?;
    check_tools()?;
    let audio = prepare(dir, opts.force, "audio", "wav")?;
    let tmp = dir.join(".make-tmp");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    }
    std::fs::create_dir(&tmp).map_err(|e| Error::io(&tmp, e))?;
    let made = noise_pool(&tmp, opts.seed)
        .and_then(|noise| synthesise_all(&clips, &noise, &tmp, &audio, opts.jobs));
    let _ = std::fs::remove_dir_all(&tmp);
    made?;
    write_splits(dir, clips.len(), &samples(&clips, opts.seed))
}

/// espeak-ng and sox run, and espeak-ng has every variant (an unknown one would silently
/// fall back to the plain voice).
fn check_tools() -> Result<()> {
    tools::run("sox", &["--version"])?;
    let listing = tools::run("espeak-ng", &["--voices=variant"])?;
    let listing = String::from_utf8_lossy(&listing);
    let have: Vec<&str> =
        listing.split_whitespace().filter_map(|w| w.strip_prefix("!v/")).collect();
    let missing: Vec<&str> = TRAIN_VARIANTS
        .iter()
        .chain(&TEST_VARIANTS)
        .copied()
        .filter(|v| !have.contains(v))
        .collect();
    if !missing.is_empty() {
        return Err(Error::Invalid(format!(
            "espeak-ng lacks the voice variants {} (`espeak-ng --voices=variant` lists what it has; espeak-ng 1.51 has them all)",
            missing.join(", ")
        )));
    }
    Ok(())
}

/// The one-second noise clips, 16 kHz mono.
fn noise_pool(tmp: &Path, seed: u64) -> Result<Vec<std::path::PathBuf>> {
    let mut rng = Rng::keyed(seed, "noise");
    (0..NOISE_POOL)
        .map(|k| {
            let path = tmp.join(format!("noise{k:02}.wav"));
            let offset = format!("{:.3}", f64::from(rng.between(0, 28_000)) / 1000.0);
            let colour = NOISES[k % NOISES.len()];
            let p = arg(&path)?;
            let args = ["-R", "-V1", "-n", "-r", "16000", "-c", "1", "-b", "16", p, "synth", "30"];
            tools::run("sox", &[&args[..], &[colour, "trim", &offset, "1"]].concat())?;
            Ok(path)
        })
        .collect()
}

/// Makes every clip, `jobs` at a time (0: one per core); stops at the first failure.
fn synthesise_all(
    clips: &[Clip],
    noise: &[std::path::PathBuf],
    tmp: &Path,
    audio: &Path,
    jobs: usize,
) -> Result<()> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let jobs = if jobs == 0 { cores } else { jobs }.clamp(1, clips.len().max(1));
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let failure: Mutex<Option<Error>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..jobs {
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    let Some(clip) = clips.get(next.fetch_add(1, Ordering::Relaxed)) else { break };
                    if let Err(e) = synthesise(clip, noise, tmp, audio) {
                        stop.store(true, Ordering::Relaxed);
                        if let Ok(mut f) = failure.lock() {
                            f.get_or_insert(e);
                        }
                    }
                }
            });
        }
    });
    match failure.into_inner() {
        Ok(None) => Ok(()),
        Ok(Some(e)) => Err(e),
        Err(_) => Err(Error::Invalid("a synthesis worker panicked".into())),
    }
}

/// espeak-ng | sox (16 kHz, trim, normalise, delay, one second), then sox -m with noise.
fn synthesise(clip: &Clip, noise: &[std::path::PathBuf], tmp: &Path, audio: &Path) -> Result<()> {
    let clean = tmp.join(format!("{}.wav", clip.name));
    let out = audio.join(format!("{}.wav", clip.name));
    let (voice, speed, pitch) = (clip.voice(), clip.speed.to_string(), clip.pitch.to_string());
    let speak = ["-v", &voice, "-s", &speed, "-p", &pitch, "--stdout", DIGITS[clip.digit]];
    let lead = format!("{:.3}", f64::from(clip.lead_ms) / 1000.0);
    let trim = ["silence", "1", "0.02", "1%", "reverse", "silence", "1", "0.02", "1%", "reverse"];
    let fit = ["norm", "-3", "pad", &lead, "1", "trim", "0", "1"];
    let to_16k = ["-R", "-V1", "-t", "wav", "-", "-r", "16000", "-c", "1", "-b", "16"];
    let clean_arg = arg(&clean)?;
    let shape = [&to_16k[..], &[clean_arg], &trim, &fit].concat();
    tools::pipe(("espeak-ng", &speak), ("sox", &shape))?;
    let noise_file = noise.get(clip.noise).ok_or_else(|| Error::Invalid("no noise clip".into()))?;
    let level = format!("{:.3}", f64::from(clip.noise_milli) / 1000.0);
    let mix = ["-R", "-V1", "-m", "-v", "1", clean_arg, "-v", &level, arg(noise_file)?, arg(&out)?];
    tools::run("sox", &mix)?;
    std::fs::remove_file(&clean).map_err(|e| Error::io(&clean, e))
}

#[cfg(test)]
mod tests;
