//! Structured mutations of valid inputs for the fuzz tests (issue 17), driven by proptest:
//! a seed file is changed by a few edits (bit flips, truncation, inserted bytes, a field
//! overwritten with an edge value, a range copied elsewhere; for text also a token swapped
//! for an edge value, a line dropped or repeated) and handed to a parser, which must return
//! `Ok` or `Err` without panicking, within a time bound. Shared by the fuzz tests of
//! braid-core, braid-data and braid-train (`#[path]`-included; tests/ files cannot
//! depend on each other).
//!
//! The runs are deterministic (a fixed proptest RNG), so CI sees the same inputs each
//! time; `BRAID_FUZZ_CASES=N` multiplies every target's count by N for a longer search.
#![allow(dead_code, clippy::panic)]

use std::cell::Cell;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

/// Most time a single input may take (debug build; CPU time where it can be read).
const MAX_CASE_TIME: Duration = Duration::from_secs(5);

/// Little-endian values that sit on the edges of size, count and offset fields.
const EDGE_BYTES: &[&[u8]] = &[
    &[0],
    &[0xff],
    &[0x80],
    &[0, 0, 0, 0],
    &[1, 0, 0, 0],
    &[0xff, 0xff, 0xff, 0xff],
    &[0xff, 0xff, 0xff, 0x7f],
    &[0, 0, 0, 0x80],
    &[0, 0, 0, 0, 0, 0, 0, 0],
    &[0xff; 8],
    &[0, 0, 0, 0, 0, 1, 0, 0],
    &[0, 0, 0, 0, 0, 0, 0, 0x80],
];

/// Tokens that break numbers, strings and structures in text formats.
const EDGE_TOKENS: &[&str] = &[
    "0",
    "-1",
    "nan",
    "NaN",
    "inf",
    "-inf",
    "1e999",
    "-0.0",
    "4294967296",
    "18446744073709551616",
    "9223372036854775807",
    "1000000000",
    "\"\"",
    "\"x\"",
    "[]",
    "{}",
    "true",
    "(",
    ")",
    ",",
    "\u{e9}",
    "",
];

/// One change to an input.
#[derive(Debug, Clone)]
pub enum Edit {
    /// Flip one bit.
    Flip(Index, u8),
    /// Keep only a prefix.
    Truncate(Index),
    /// Insert arbitrary bytes.
    Insert(Index, Vec<u8>),
    /// Overwrite with an edge value (a size, count or offset field, wherever it lands).
    Field(Index, usize),
    /// Copy a range of the input over another place.
    Copy(Index, Index, u8),
    /// Text: replace the token at a place with an edge token.
    Token(Index, usize),
    /// Text: drop a line.
    DropLine(Index),
    /// Text: repeat a line.
    DupLine(Index),
}

fn edit(text: bool) -> BoxedStrategy<Edit> {
    let binary = prop_oneof![
        3 => (any::<Index>(), 0u8..8).prop_map(|(i, b)| Edit::Flip(i, b)),
        1 => any::<Index>().prop_map(Edit::Truncate),
        1 => (any::<Index>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(i, b)| Edit::Insert(i, b)),
        3 => (any::<Index>(), 0..EDGE_BYTES.len()).prop_map(|(i, v)| Edit::Field(i, v)),
        1 => (any::<Index>(), any::<Index>(), 1u8..64).prop_map(|(a, b, n)| Edit::Copy(a, b, n)),
    ];
    if !text {
        return binary.boxed();
    }
    prop_oneof![
        2 => binary,
        4 => (any::<Index>(), 0..EDGE_TOKENS.len()).prop_map(|(i, t)| Edit::Token(i, t)),
        1 => any::<Index>().prop_map(Edit::DropLine),
        1 => any::<Index>().prop_map(Edit::DupLine),
    ]
    .boxed()
}

/// Byte ranges of the tokens of `s` (runs of letters, digits, `_ . + -`) and of every
/// other single byte.
fn tokens(s: &[u8]) -> Vec<(usize, usize)> {
    let word = |b: u8| b.is_ascii_alphanumeric() || b"_.+-".contains(&b);
    let mut out = Vec::new();
    let mut i = 0;
    while i < s.len() {
        let start = i;
        if word(s[i]) {
            while i < s.len() && word(s[i]) {
                i += 1;
            }
        } else {
            i += 1;
        }
        if !s[start].is_ascii_whitespace() {
            out.push((start, i));
        }
    }
    out
}

fn lines(s: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, &b) in s.iter().enumerate() {
        if b == b'\n' {
            out.push((start, i + 1));
            start = i + 1;
        }
    }
    if start < s.len() {
        out.push((start, s.len()));
    }
    out
}

/// `input` with `e` applied.
pub fn apply(input: &mut Vec<u8>, e: &Edit) {
    let n = input.len();
    match e {
        Edit::Flip(i, b) if n > 0 => input[i.index(n)] ^= 1 << b,
        Edit::Truncate(i) => input.truncate(i.index(n + 1)),
        Edit::Insert(i, bytes) => {
            let at = i.index(n + 1);
            input.splice(at..at, bytes.iter().copied());
        }
        Edit::Field(i, v) if n > 0 => {
            let at = i.index(n);
            for (k, b) in EDGE_BYTES[*v].iter().enumerate() {
                if let Some(slot) = input.get_mut(at + k) {
                    *slot = *b;
                }
            }
        }
        Edit::Copy(from, to, len) if n > 0 => {
            let (from, to) = (from.index(n), to.index(n));
            let len = usize::from(*len).min(n - from).min(n - to);
            let piece = input[from..from + len].to_vec();
            input[to..to + len].copy_from_slice(&piece);
        }
        Edit::Token(i, t) => {
            let spans = tokens(input);
            if !spans.is_empty() {
                let (a, b) = spans[i.index(spans.len())];
                input.splice(a..b, EDGE_TOKENS[*t].bytes());
            }
        }
        Edit::DropLine(i) | Edit::DupLine(i) => {
            let spans = lines(input);
            if !spans.is_empty() {
                let (a, b) = spans[i.index(spans.len())];
                let line = input[a..b].to_vec();
                match e {
                    Edit::DropLine(_) => drop(input.drain(a..b)),
                    _ => drop(input.splice(a..a, line)),
                }
            }
        }
        _ => {}
    }
}

/// CPU time of the calling thread (Linux: `/proc/thread-self/stat`, in ticks of 10 ms).
fn thread_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    // Fields after the `(name)`, which may hold spaces: utime and stime are 14 and 15.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// How many inputs a target tries: `cases` times `BRAID_FUZZ_CASES` (default 1).
fn scaled(cases: u32) -> u32 {
    let k = std::env::var("BRAID_FUZZ_CASES").ok().and_then(|v| v.parse::<u32>().ok());
    cases.saturating_mul(k.filter(|&k| k > 0).unwrap_or(1))
}

/// Feeds `cases` mutations of `seeds` (each the seed bytes and 1 to 4 edits; text edits
/// too when `text`) to `check`, which must not panic and must return within
/// [`MAX_CASE_TIME`]; prints how many inputs were tried and how long it took.
pub fn fuzz(name: &str, seeds: &[Vec<u8>], text: bool, cases: u32, check: impl Fn(&[u8])) {
    run(name, seeds, text, cases, |_| {}, check);
}

/// [`fuzz`] for parsers that read a path: each input is written to `scratch` (outside
/// the timed part: a loaded disk is not the parser's fault) and `check` gets its path.
pub fn fuzz_file(
    name: &str,
    scratch: &Scratch,
    seeds: &[Vec<u8>],
    text: bool,
    cases: u32,
    check: impl Fn(&std::path::Path),
) {
    let write = |input: &[u8]| {
        scratch.write(input);
    };
    run(name, seeds, text, cases, write, |_| check(&scratch.path));
}

fn run(
    name: &str,
    seeds: &[Vec<u8>],
    text: bool,
    cases: u32,
    prepare: impl Fn(&[u8]),
    check: impl Fn(&[u8]),
) {
    assert!(!seeds.is_empty(), "{name}: no seeds");
    let config = Config {
        cases: scaled(cases),
        failure_persistence: None,
        max_shrink_iters: 256,
        ..Config::default()
    };
    let mut runner =
        TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha));
    let strategy = (0..seeds.len(), prop::collection::vec(edit(text), 1..5));
    let (tried, slowest) = (Cell::new(0u64), Cell::new(Duration::ZERO));
    let start = Instant::now();
    let result = runner.run(&strategy, |(seed, edits)| {
        let mut input = seeds[seed].clone();
        for e in &edits {
            apply(&mut input, e);
        }
        tried.set(tried.get() + 1);
        prepare(&input);
        let t = Instant::now();
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| check(&input)));
        let mut took = t.elapsed();
        if took >= MAX_CASE_TIME && outcome.is_ok() {
            // Slow on the clock: timed again in CPU time where the OS tells it, since a
            // machine busy with other work is not a hang.
            if let Some(a) = thread_cpu() {
                let _ = std::panic::catch_unwind(AssertUnwindSafe(|| check(&input)));
                took = thread_cpu().map_or(took, |b| b.saturating_sub(a));
            }
        }
        slowest.set(slowest.get().max(took));
        let shown = || input.escape_ascii().to_string().chars().take(2000).collect::<String>();
        prop_assert!(outcome.is_ok(), "{name}: panicked on input b\"{}\"", shown());
        prop_assert!(took < MAX_CASE_TIME, "{name}: took {took:?} on input b\"{}\"", shown());
        Ok(())
    });
    eprintln!(
        "fuzz {name}: {} inputs in {:.2} s (slowest {:.1} ms)",
        tried.get(),
        start.elapsed().as_secs_f64(),
        slowest.get().as_secs_f64() * 1e3
    );
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// A scratch file for parsers that read a path: `write` puts the bytes there.
pub struct Scratch {
    _dir: tempfile::TempDir,
    /// The file.
    pub path: std::path::PathBuf,
}

impl Scratch {
    /// A file named `name` in a new temporary directory (in memory, `/dev/shm`, where
    /// there is one).
    pub fn new(name: &str) -> Self {
        let dir = tempfile::tempdir_in("/dev/shm")
            .or_else(|_| tempfile::tempdir())
            .unwrap_or_else(|e| panic!("tempdir: {e}"));
        let path = dir.path().join(name);
        Self { _dir: dir, path }
    }

    /// Replaces the file's content with `bytes` and returns its path.
    pub fn write(&self, bytes: &[u8]) -> &std::path::Path {
        std::fs::write(&self.path, bytes)
            .unwrap_or_else(|e| panic!("{}: {e}", self.path.display()));
        &self.path
    }
}

#[test]
fn edits_stay_in_bounds() {
    let seed = b"a = 1\nb = [2, 3]\n".to_vec();
    fuzz("mutate (self-test)", &[seed, Vec::new()], true, 500, |_| {});
}
