//! Where audit records go: [`AuditSink`], and the sinks in the crate.

mod file;
#[cfg(feature = "redis")]
mod redis_stream;
#[cfg(feature = "audit-signing")]
mod seal;
mod tracing_sink;

use std::future::Future;

pub use file::{FileSink, FileSinkBuilder, FileSinkStats};
#[cfg(feature = "audit-signing")]
use file::{read_mended, regular_or_absent};
#[cfg(feature = "redis")]
pub use redis_stream::RedisStreamSink;
#[cfg(feature = "audit-signing")]
pub use seal::Checkpoints;
pub use tracing_sink::TracingSink;

use super::batch::RecordBatch;
use super::record::AuditRecord;

/// Why a record could not be written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SinkError {
    /// The file or device failed.
    #[error("audit sink I/O failed: {0}")]
    Io(String),
    /// The sink's writer is gone (shut down, or it failed for good).
    #[error("the audit sink is closed")]
    Closed,
    /// A store (Redis) failed.
    #[error(transparent)]
    Store(#[from] crate::StoreError),
}

/// A destination for audit records: a file, a Redis stream, your SIEM. One trait impl.
///
/// `write` returns once the record is as durable as the sink promises (for the file sink:
/// written and fsynced); the layer releases a fail-closed response only then.
pub trait AuditSink: Clone + Send + Sync + 'static {
    /// Writes one record.
    fn write(&self, record: AuditRecord) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// Writes several records, each with its own outcome, in order. The default writes them one
    /// after the other; a sink that commits in groups (the file sink) takes them all at once, so
    /// a buffered layer's writer needs no task per record.
    fn write_many(
        &self,
        records: Vec<AuditRecord>,
    ) -> impl Future<Output = Vec<Result<(), SinkError>>> + Send {
        async move {
            let mut outcomes = Vec::with_capacity(records.len());
            for record in records {
                outcomes.push(self.write(record).await);
            }
            outcomes
        }
    }

    /// Writes a batch of records given as their canonical bytes, each with its own outcome, in
    /// order: what the layer hands its sink. The default reads each record back and calls
    /// [`write_many`](Self::write_many); a sink that stores the canonical bytes (every sink in
    /// the crate) takes them as they are, and no record is formatted twice.
    fn write_batch(
        &self,
        batch: RecordBatch,
    ) -> impl Future<Output = Vec<Result<(), SinkError>>> + Send {
        async move {
            let parsed: Vec<_> = batch.records().collect();
            if parsed.iter().all(Result::is_ok) {
                return self
                    .write_many(parsed.into_iter().flatten().collect())
                    .await;
            }
            // Canonical bytes always read back; were one record not to, it alone is refused.
            let mut outcomes = Vec::with_capacity(parsed.len());
            for record in parsed {
                outcomes.push(match record {
                    Ok(record) => self.write(record).await,
                    Err(error) => Err(SinkError::Io(format!(
                        "a record's canonical bytes do not read back: {error}"
                    ))),
                });
            }
            outcomes
        }
    }

    /// Whether the sink can take records now; when not, fail-closed PHI routes answer 503
    /// without running the handler. Default: always.
    fn is_healthy(&self) -> bool {
        true
    }

    /// The sink's name for logs.
    fn name(&self) -> &'static str;
}

/// Writes a batch of one record through [`AuditSink::write_batch`]; its outcome.
pub(crate) async fn write_alone<Si: AuditSink>(
    sink: &Si,
    batch: RecordBatch,
) -> Result<(), SinkError> {
    let outcomes = sink.write_batch(batch).await;
    outcomes
        .into_iter()
        .next()
        .unwrap_or(Err(SinkError::Closed))
}
