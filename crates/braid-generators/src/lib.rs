//! braid-generators
