//! Conditional requests (RFC 9110 section 13): entity tags, precondition evaluation.

mod etag;
mod precondition;

pub use etag::{EntityTag, EtagError, TagList};
pub use precondition::{Evaluation, Preconditions, Validators, evaluate};
