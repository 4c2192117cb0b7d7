//! braid-encoders
