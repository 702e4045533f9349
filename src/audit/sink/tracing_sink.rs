//! [`TracingSink`]: records as `tracing` events, for a log pipeline that already ships them.

use super::{AuditSink, SinkError};
use crate::audit::record::AuditRecord;

/// Writes each record as an `INFO` event with target `api_policy::audit` and the record's
/// canonical JSON in the field `record`. Durable only as far as your subscriber is: use it beside
/// a file or Redis sink, or where the log pipeline is the system of record.
#[derive(Debug, Clone, Copy, Default)]
pub struct TracingSink;

impl AuditSink for TracingSink {
    async fn write(&self, record: AuditRecord) -> Result<(), SinkError> {
        let canonical = record.canonical();
        tracing::info!(target: "api_policy::audit", record = %String::from_utf8_lossy(&canonical), "PHI access");
        Ok(())
    }

    fn name(&self) -> &'static str {
        "tracing"
    }
}
