//! braid-llm
