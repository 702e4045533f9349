//! [`RecordBatch`]: records handed to a sink together, as their canonical bytes.

use super::record::AuditRecord;

/// Records for a sink to write together, in order, each as its
/// [canonical bytes](AuditRecord::canonical): what a chained sink hashes and stores, so it
/// takes them as they are ([`canonical`](Self::canonical)), and a sink that wants the fields
/// reads them back ([`records`](Self::records)).
///
/// The layer formats each record from what its request and answer hold, without a string per
/// field, and a batch keeps all its records in one buffer, whichever sink takes it.
///
/// ```
/// use api_policy::audit::{AuditRecord, RecordBatch};
///
/// let record: AuditRecord = serde_json::from_str(
///     r#"{"time":"2026-11-24T12:00:00.000042Z","request_id":"req-1","actor":"dr_1",
///         "actor_kind":"user","session":null,"action":"GET /patients/{id}",
///         "resource":"/patients/pat_1","subject":"pat_1","status":200,"refused_by":null,
///         "source_ip":"192.0.2.1","user_agent":null,"latency_us":1234}"#,
/// )?;
/// let batch: RecordBatch = std::iter::once(&record).collect();
/// assert_eq!(batch.len(), 1);
/// assert_eq!(batch.canonical().next(), Some(&record.canonical()[..]));
/// assert_eq!(batch.records().next().transpose()?, Some(record));
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordBatch {
    /// The records' canonical bytes, one after the other.
    bytes: Vec<u8>,
    /// Where each record's bytes end in `bytes`.
    ends: Vec<usize>,
}

impl RecordBatch {
    /// An empty batch with room for about `records` records.
    #[must_use]
    pub fn with_capacity(records: usize) -> Self {
        Self {
            bytes: Vec::with_capacity(records.saturating_mul(400)),
            ends: Vec::with_capacity(records),
        }
    }

    /// Appends a record.
    pub fn push(&mut self, record: &AuditRecord) {
        record.append_canonical(&mut self.bytes);
        self.ends.push(self.bytes.len());
    }

    /// Appends a record given as its canonical bytes (a request's record, formatted when its
    /// answer came in).
    pub(crate) fn push_canonical(&mut self, canonical: &[u8]) {
        self.bytes.extend_from_slice(canonical);
        self.ends.push(self.bytes.len());
    }

    /// A batch of one record, given as its canonical bytes.
    pub(crate) fn of_canonical(canonical: Vec<u8>) -> Self {
        let ends = vec![canonical.len()];
        Self {
            bytes: canonical,
            ends,
        }
    }

    /// How many records the batch holds.
    #[must_use]
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether the batch holds no record.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Each record's canonical bytes, in order.
    pub fn canonical(&self) -> impl Iterator<Item = &[u8]> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts
            .zip(&self.ends)
            .filter_map(|(start, &end)| self.bytes.get(start..end))
    }

    /// Each record, read back from its canonical bytes, in order.
    pub fn records(&self) -> impl Iterator<Item = Result<AuditRecord, serde_json::Error>> {
        self.canonical().map(serde_json::from_slice)
    }

    /// All the records' canonical bytes, one after the other (what
    /// [`canonical`](Self::canonical) yields, joined).
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
}

impl<'a> FromIterator<&'a AuditRecord> for RecordBatch {
    fn from_iter<I: IntoIterator<Item = &'a AuditRecord>>(records: I) -> Self {
        let mut batch = Self::default();
        for record in records {
            batch.push(record);
        }
        batch
    }
}
