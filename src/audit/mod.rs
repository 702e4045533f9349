//! PHI audit: one tamper-evident record per access to a PHI route.

pub mod chain;
mod record;

pub use record::AuditRecord;
