//! braid-projectors
