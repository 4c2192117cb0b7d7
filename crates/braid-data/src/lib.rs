//! braid-data
