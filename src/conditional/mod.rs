//! Conditional requests (RFC 9110 section 13): entity tags, precondition evaluation, and the
//! validators and write locks that decide updates before the handler runs.

mod etag;
#[cfg(feature = "memory")]
mod memory;
mod precondition;
#[cfg(feature = "redis")]
mod redis;
mod store;

pub use crate::owner::OwnerToken;
pub use etag::{EntityTag, EtagError, TagList};
#[cfg(feature = "memory")]
pub use memory::MemoryValidatorStore;
pub use precondition::{Evaluation, Preconditions, Validators, evaluate};
#[cfg(feature = "redis")]
pub use redis::RedisValidatorStore;
pub use store::{Locked, StoredValidators, Update, ValidatorStore};
