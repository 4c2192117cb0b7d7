//! Checkpoint I/O: `.npy`/`.npz` arrays.

pub mod npy;

pub use npy::{read_npy, read_npz, write_npy, write_npz, NpyArray, NpyData};
