//! braid-pipeline
