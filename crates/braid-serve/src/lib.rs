//! braid-serve
