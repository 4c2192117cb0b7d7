//! The stages as [`crate::Task`]s: `align` and `instruct` ([`ConversationTask`] over a
//! multimodal pipeline), `contrastive` ([`ContrastiveTask`]), the DPO loss of preference
//! tuning ([`preference`]); `classify` lives in [`crate::classify`].

mod contrastive;
mod conversation;
pub mod preference;

pub use contrastive::{info_nce, l2_normalize, ContrastiveTask, Tower, INITIAL_LOGIT_SCALE};
pub use conversation::{padded_loss, stage_vars, ConversationTask, Samples};

/// Held-out metrics, computed by the caller.
pub type Evaluate<'a> = Box<dyn Fn() -> Result<std::collections::BTreeMap<String, f64>> + 'a>;

use braid_core::Result;
