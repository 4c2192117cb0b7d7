//! braid-nn
