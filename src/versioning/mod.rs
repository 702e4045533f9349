//! API versions: resolution, deprecation and sunset headers (RFC 9745, RFC 8594), enforcement,
//! brownouts, pins and a report of who still calls deprecated versions.

mod layer;
#[cfg(feature = "memory")]
mod memory;
mod policy;
#[cfg(feature = "redis")]
mod redis;
mod resolve;
mod service;
mod store;
mod version;

pub use layer::{VersionStatus, VersioningBuilder, VersioningLayer};
#[cfg(feature = "memory")]
pub use memory::MemoryVersionPinStore;
pub use policy::Deprecation;
#[cfg(feature = "redis")]
pub use redis::RedisVersionPinStore;
pub use resolve::Source;
pub use service::{ResponseFuture, VersionSource, Versioning};
pub use store::{Usage, VersionPinStore};
pub use version::{ApiVersion, VersionError};
