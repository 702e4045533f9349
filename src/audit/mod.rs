//! PHI audit: one tamper-evident record per access to a PHI route.

pub mod chain;
mod layer;
mod record;
mod service;
pub mod sink;

pub use layer::{AuditBuilder, AuditLayer, AuditStats, Durability};
pub use record::AuditRecord;
pub use service::Audit;
#[cfg(feature = "redis")]
pub use sink::RedisStreamSink;
pub use sink::{AuditSink, FileSink, SinkError, TracingSink};
