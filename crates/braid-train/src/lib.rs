//! braid-train
