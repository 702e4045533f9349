//! Webhook signature verification.

mod signature;

pub use signature::*;
