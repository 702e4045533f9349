//! PHI audit: one tamper-evident record per access to a PHI route.

pub mod chain;
mod record;
pub mod sink;

pub use record::AuditRecord;
pub use sink::{AuditSink, FileSink, SinkError, TracingSink};
