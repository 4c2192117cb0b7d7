//! The pseudo-random choices of the dataset makers: SplitMix64 (Steele, Lea and Flood,
//! "Fast splittable pseudorandom number generators", OOPSLA 2014), written out so that a
//! seed gives the same dataset on every platform and with every version of the `rand`
//! crate (whose `StdRng` may change between releases).

/// A SplitMix64 stream.
#[derive(Debug, Clone)]
pub(crate) struct Rng {
    state: u64,
}

impl Rng {
    /// The stream of `seed`.
    pub(crate) fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// The stream of `seed` for the item named `key`: an item's choices do not depend on
    /// which other items are made, or in which order.
    pub(crate) fn keyed(seed: u64, key: &str) -> Self {
        // FNV-1a of the key, then one SplitMix64 step to spread it.
        let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
        let mut mixed = Self::new(seed ^ hash);
        Self::new(mixed.next_u64())
    }

    /// The next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 when `n` is 0), by Lemire's multiply-shift.
    pub(crate) fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    /// Uniform in `lo..=hi`.
    pub(crate) fn between(&mut self, lo: u32, hi: u32) -> u32 {
        lo + self.below((hi.saturating_sub(lo) as usize) + 1) as u32
    }

    /// Uniform in `[0, 1)`, on a grid of 2^-53.
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// One of `items`, `None` when there are none.
    pub(crate) fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        items.get(self.below(items.len()))
    }

    /// Fisher-Yates shuffle.
    pub(crate) fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_fixed_by_seed_and_key() {
        // SplitMix64's published first output for seed 0.
        assert_eq!(Rng::new(0).next_u64(), 0xe220_a839_7b1d_cdaf);
        let draw = |seed, key| {
            let mut r = Rng::keyed(seed, key);
            (0..8).map(|_| r.below(10)).collect::<Vec<_>>()
        };
        assert_eq!(draw(3, "u01_r0_w4"), draw(3, "u01_r0_w4"));
        assert_ne!(draw(3, "u01_r0_w4"), draw(4, "u01_r0_w4"));
        assert_ne!(draw(3, "u01_r0_w4"), draw(3, "u01_r0_w5"));
        let mut r = Rng::new(1);
        assert!((0..1000).all(|_| r.below(3) < 3 && (5..=7).contains(&r.between(5, 7))));
        assert!((0..1000).map(|_| r.unit()).all(|u| (0.0..1.0).contains(&u)));
        assert_eq!(r.below(0), 0);
        assert!(r.pick::<u8>(&[]).is_none());
        let mut v: Vec<u32> = (0..20).collect();
        r.shuffle(&mut v);
        assert_ne!(v, (0..20).collect::<Vec<_>>());
        v.sort_unstable();
        assert_eq!(v, (0..20).collect::<Vec<_>>());
    }
}
