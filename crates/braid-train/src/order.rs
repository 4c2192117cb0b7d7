//! Seeded data order: epoch `e` visits the training set in a permutation drawn from
//! `(seed, e)` alone, so a resumed run only needs the step count to continue with the very
//! batches an uninterrupted run would have seen.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

/// Where the loop is in the data: epoch and position within its permutation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// Epoch (0-based).
    pub epoch: usize,
    /// Examples of this epoch already consumed.
    pub offset: usize,
}

/// Shuffled batches over `len` examples.
#[derive(Debug, Clone)]
pub struct DataOrder {
    len: usize,
    batch: usize,
    seed: u64,
    epoch: usize,
    perm: Vec<usize>,
}

impl DataOrder {
    /// Batches of `batch` over `len` examples (the last batch of an epoch may be smaller).
    pub fn new(len: usize, batch: usize, seed: u64) -> Self {
        let mut order =
            Self { len, batch: batch.max(1), seed, epoch: usize::MAX, perm: Vec::new() };
        order.shuffle(0);
        order
    }

    fn shuffle(&mut self, epoch: usize) {
        if self.epoch == epoch {
            return;
        }
        let mut rng =
            StdRng::seed_from_u64(self.seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        self.perm = (0..self.len).collect();
        self.perm.shuffle(&mut rng);
        self.epoch = epoch;
    }

    /// The next batch's indices; advances `cursor`, moving to the next epoch when one ends.
    pub fn next(&mut self, cursor: &mut Cursor) -> Vec<usize> {
        if cursor.offset >= self.len {
            *cursor = Cursor { epoch: cursor.epoch + 1, offset: 0 };
        }
        self.shuffle(cursor.epoch);
        let end = (cursor.offset + self.batch).min(self.len);
        let out = self.perm[cursor.offset..end].to_vec();
        cursor.offset = end;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_are_permutations_and_a_restart_from_a_cursor_continues_identically() {
        let mut order = DataOrder::new(10, 4, 7);
        let mut cur = Cursor::default();
        let first: Vec<Vec<usize>> = (0..3).map(|_| order.next(&mut cur)).collect();
        let mut all: Vec<usize> = first.concat();
        all.sort_unstable();
        assert_eq!(all, (0..10).collect::<Vec<_>>());
        assert_eq!(first[2].len(), 2);
        let saved = cur;
        let a: Vec<Vec<usize>> = (0..4).map(|_| order.next(&mut cur)).collect();
        let mut again = DataOrder::new(10, 4, 7);
        let mut cur2 = saved;
        let b: Vec<Vec<usize>> = (0..4).map(|_| again.next(&mut cur2)).collect();
        assert_eq!(a, b);
        assert_ne!(a[0..3].concat(), first.concat(), "epoch 1 is a new permutation");
    }
}
