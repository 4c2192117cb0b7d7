//! Budgets on what an input may make Braid allocate or loop over: a header, a config or
//! a flag claiming a size is checked against its budget before anything is sized from
//! it. Each budget has a default that valid inputs stay far below and an environment
//! variable that raises (or lowers) it; the error names both.

/// One budget: an environment variable overriding a default count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// The environment variable that replaces the default (`BRAID_MAX_PIXELS`).
    pub env: &'static str,
    /// The budget when the variable is unset or not a positive integer.
    pub default: u64,
    /// What is counted, plural (`pixels`).
    pub unit: &'static str,
}

/// Pixels of an image decoded or produced by resizing (Pillow's decompression-bomb
/// threshold, twice `Image.MAX_IMAGE_PIXELS`).
pub const PIXELS: Limit = Limit::new("BRAID_MAX_PIXELS", 2 * 89_478_485, "pixels");

/// Samples of one audio signal, decoded, resampled or padded (2^28: 4.6 hours at 16 kHz,
/// 1 GiB of f32).
pub const AUDIO_SAMPLES: Limit = Limit::new("BRAID_MAX_AUDIO_SAMPLES", 1 << 28, "samples");

/// Parameters of a model initialised from scratch (2^29: 2 GiB of f32).
pub const INIT_PARAMS: Limit = Limit::new("BRAID_MAX_INIT_PARAMS", 1 << 29, "parameters");

/// Instructions a chat template may execute while rendering (minijinja fuel).
pub const TEMPLATE_FUEL: Limit =
    Limit::new("BRAID_MAX_TEMPLATE_FUEL", 20_000_000, "template instructions");

/// Frames sampled from one video (`--frames`; 4096 CLIP frames are already 2.4 GB of
/// f32 pixels).
pub const VIDEO_FRAMES: Limit = Limit::new("BRAID_MAX_VIDEO_FRAMES", 4096, "frames");

/// Frames decoded from one video file and held for sampling (2^18: 2.4 hours at 30 fps).
pub const VIDEO_SOURCE_FRAMES: Limit =
    Limit::new("BRAID_MAX_VIDEO_SOURCE_FRAMES", 1 << 18, "frames");

/// Pixels of all the frames decoded from one video file and held for sampling (2^29:
/// 1.5 GiB of RGB, 580 frames of 1280x720).
pub const VIDEO_PIXELS: Limit = Limit::new("BRAID_MAX_VIDEO_PIXELS", 1 << 29, "pixels");

/// Bytes a `.npz` archive's entries decompress to, all together (2^32: 4 GiB).
pub const NPZ_BYTES: Limit = Limit::new("BRAID_MAX_NPZ_BYTES", 1 << 32, "bytes");

/// Objects in a decoded pickle, a shared object counted once per reference (2^23; HAPT's
/// and PyTorch's pickles hold thousands).
pub const PICKLE_OBJECTS: Limit = Limit::new("BRAID_MAX_PICKLE_OBJECTS", 1 << 23, "objects");

/// String, bytes and big-integer payload of a decoded pickle, a shared one counted once
/// per reference (2^30: 1 GiB).
pub const PICKLE_BYTES: Limit = Limit::new("BRAID_MAX_PICKLE_BYTES", 1 << 30, "bytes");

/// Nesting depth of a decoded pickle (the tree's consumers recurse over it).
pub const PICKLE_DEPTH: Limit = Limit::new("BRAID_MAX_PICKLE_DEPTH", 1000, "levels");

impl Limit {
    /// A budget of `default` `unit`, overridden by the variable `env`.
    pub const fn new(env: &'static str, default: u64, unit: &'static str) -> Self {
        Self { env, default, unit }
    }

    /// The budget in force: the environment variable when it holds a positive integer
    /// (underscores allowed: `300_000_000`), else the default.
    pub fn get(&self) -> u64 {
        std::env::var(self.env)
            .ok()
            .and_then(|v| v.trim().replace('_', "").parse::<u64>().ok())
            .filter(|&n| n > 0)
            .unwrap_or(self.default)
    }

    /// `Ok` when `n` is within the budget; otherwise a one-line message saying that
    /// `what` needs `n` units, the budget, and how to raise it.
    pub fn check(&self, n: u64, what: &str) -> std::result::Result<(), String> {
        let limit = self.get();
        if n <= limit {
            return Ok(());
        }
        Err(self.exceeded(&n.to_string(), what))
    }

    /// Like [`Limit::check`] for a count that may not even fit `u64` (`None`).
    pub fn check_opt(&self, n: Option<u64>, what: &str) -> std::result::Result<(), String> {
        match n {
            Some(n) => self.check(n, what),
            None => Err(self.exceeded("more than 2^64", what)),
        }
    }

    fn exceeded(&self, n: &str, what: &str) -> String {
        format!(
            "{what} needs {n} {unit}, over the limit of {limit} {unit} (set {env} to raise it)",
            unit = self.unit,
            limit = self.get(),
            env = self.env
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_names_the_need_the_limit_and_the_variable() {
        let l = Limit::new("BRAID_TEST_LIMIT_UNSET", 10, "widgets");
        assert_eq!(l.get(), 10);
        assert!(l.check(10, "x").is_ok());
        let msg = l.check(11, "resizing to 11x1").err().unwrap_or_default();
        assert_eq!(msg, "resizing to 11x1 needs 11 widgets, over the limit of 10 widgets (set BRAID_TEST_LIMIT_UNSET to raise it)");
        assert!(l.check_opt(None, "x").err().unwrap_or_default().contains("more than 2^64"));
    }
}
