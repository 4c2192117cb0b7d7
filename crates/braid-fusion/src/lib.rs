//! braid-fusion
