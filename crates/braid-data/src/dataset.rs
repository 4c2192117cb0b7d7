//! The dataset contract.

use braid_core::Result;

/// Random access to examples. Decoding happens in `get`, so a corrupt example is an error
/// naming its file, not a panic, and the rest of the dataset is still usable.
pub trait Dataset {
    /// One decoded example.
    type Item;

    /// Number of examples.
    fn len(&self) -> usize;

    /// Whether there are no examples.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The example at `index`.
    fn get(&self, index: usize) -> Result<Self::Item>;
}
