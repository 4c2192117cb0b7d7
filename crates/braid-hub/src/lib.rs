//! braid-hub
