//! Optimisation: gradients keyed by variable name ([`Grads`]), their accumulation over
//! micro-batches, clipping by global norm, and AdamW with parameter groups whose state
//! saves to safetensors for resuming.
//!
//! References: Loshchilov & Hutter, "Decoupled Weight Decay Regularization" (ICLR 2019);
//! PyTorch `torch.optim.AdamW` and `torch.nn.utils.clip_grad_norm_`.

mod accumulate;
mod adamw;
mod clip;
mod grads;
mod state;

pub use accumulate::GradAccumulator;
pub use adamw::{decays, AdamW, AdamWConfig};
pub use clip::clip_grad_norm;
pub use grads::{named_vars, prefixed_vars, Grads};
