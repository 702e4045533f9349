//! [`RedisStreamSink`]: the chain in a Redis stream (`XADD`), shared by every instance.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};

use redis::{Script, Value};
use tokio::sync::Mutex;

use super::{AuditSink, SinkError};
use crate::audit::chain::{ChainError, Position, Verified, format_line, link, verify_bytes};
use crate::audit::record::AuditRecord;
use crate::backend::RedisBackend;
use crate::error::StoreError;

static APPEND: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("append.lua")));

/// How long one write may keep losing to other writers before it gives up.
const WRITE_DEADLINE: std::time::Duration = std::time::Duration::from_secs(5);
/// How long a write first waits while another writer has the turn (about one append's round
/// trip); it doubles while the turn stays taken, up to [`TURN_WAIT_MAX`].
const TURN_WAIT: std::time::Duration = std::time::Duration::from_millis(1);
const TURN_WAIT_MAX: std::time::Duration = std::time::Duration::from_millis(32);

/// Records as entries of a Redis stream (fields `seq`, `prev`, `hash`, `record`), chained like
/// the file: each append is a compare-and-set on the chain's head, so every instance of the app
/// extends one chain. Durable as far as the server's persistence (`appendfsync`) makes it; the
/// stream is never trimmed by the sink (archive, then `XTRIM`).
///
/// Keys: `{prefix}audit:{<name>}:log` (the stream), `{prefix}audit:{<name>}:head`, and
/// `{prefix}audit:{<name>}:turn`: the instance whose append lost a race last goes next, so a busy
/// instance cannot starve a quieter one (its next write would otherwise always arrive first).
#[derive(Clone)]
pub struct RedisStreamSink {
    backend: RedisBackend,
    stream: Arc<str>,
    head_key: Arc<str>,
    /// The head this process last saw: writes start from it, so the usual append is one
    /// round trip; writes in one process go one at a time, so they never conflict with each
    /// other.
    head: Arc<Mutex<String>>,
    healthy: Arc<AtomicBool>,
    turn_key: Arc<str>,
    /// This instance, as named in the turn key.
    writer: Arc<crate::OwnerToken>,
}

impl std::fmt::Debug for RedisStreamSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStreamSink")
            .field("stream", &self.stream)
            .finish_non_exhaustive()
    }
}

impl RedisStreamSink {
    /// A sink appending to the stream `name` on this backend.
    #[must_use]
    pub fn new(backend: &RedisBackend, name: &str) -> Self {
        let base = format!("{}audit:{{{name}}}:", backend.prefix());
        Self {
            backend: backend.clone(),
            stream: format!("{base}log").into(),
            head_key: format!("{base}head").into(),
            turn_key: format!("{base}turn").into(),
            head: Arc::new(Mutex::new(String::new())),
            healthy: Arc::new(AtomicBool::new(true)),
            writer: Arc::new(crate::OwnerToken::new()),
        }
    }

    /// The stream's key.
    #[must_use]
    pub fn stream_key(&self) -> &str {
        &self.stream
    }

    /// Checks the whole stream's chain, and that it ends at the head key.
    ///
    /// # Errors
    /// The store's error, or the first [`ChainError`] (its `line` is the entry's 1-based
    /// position in the stream).
    pub async fn verify(&self) -> Result<Result<Verified, ChainError>, StoreError> {
        let entries: Value = self
            .backend
            .query(redis::cmd("XRANGE").arg(&*self.stream).arg("-").arg("+"))
            .await?;
        let head: Option<String> = self
            .backend
            .query(redis::cmd("GET").arg(&*self.head_key))
            .await?;
        let mut bytes = Vec::new();
        let Value::Array(entries) = entries else {
            return Err(StoreError::Protocol("XRANGE did not answer a list".into()));
        };
        for entry in entries {
            let fields = field_map(&entry)
                .ok_or_else(|| StoreError::Protocol("an audit stream entry".into()))?;
            let (seq, prev, hash, record) = (
                fields.get("seq").and_then(|s| s.parse::<u64>().ok()),
                fields.get("prev").and_then(|h| decode(h)),
                fields.get("hash").and_then(|h| decode(h)),
                fields.get("record"),
            );
            match (seq, prev, hash, record) {
                (Some(seq), Some(prev), Some(hash), Some(record)) => {
                    bytes.extend(format_line(seq, &prev, &hash, record.as_bytes()));
                }
                _ => bytes.extend_from_slice(b"(a malformed entry)\n"),
            }
        }
        let name = PathBuf::from(format!("redis:{}", self.stream));
        let mut position = Position::default();
        let records = match verify_bytes(&name, &bytes, &mut position, true) {
            Ok(records) => records,
            Err(error) => return Ok(Err(error)),
        };
        let end = head.as_deref().and_then(parse_head);
        if let Some(end) = end
            && (end.next_seq != position.next_seq || end.head != position.head)
        {
            return Ok(Err(ChainError {
                file: name,
                line: records as usize + 1,
                expected_seq: position.next_seq,
                tamper: crate::audit::chain::Tamper::Truncated,
            }));
        }
        Ok(Ok(Verified {
            records,
            head: position.head,
            next_seq: position.next_seq,
        }))
    }
}

fn decode(hex_text: &str) -> Option<[u8; 32]> {
    let mut out = [0; 32];
    hex::decode_to_slice(hex_text, &mut out).ok()?;
    Some(out)
}

fn parse_head(text: &str) -> Option<Position> {
    let (seq, hash) = text.split_once(' ')?;
    Some(Position {
        next_seq: seq.parse().ok()?,
        head: decode(hash)?,
    })
}

/// An `XRANGE` entry's fields.
fn field_map(entry: &Value) -> Option<std::collections::HashMap<String, String>> {
    let Value::Array(parts) = entry else {
        return None;
    };
    let Value::Array(fields) = parts.get(1)? else {
        return None;
    };
    let text = |v: &Value| match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    };
    fields
        .chunks(2)
        .map(|pair| Some((text(pair.first()?)?, text(pair.get(1)?)?)))
        .collect()
}

impl AuditSink for RedisStreamSink {
    async fn write(&self, record: AuditRecord) -> Result<(), SinkError> {
        let canonical = record.canonical();
        let mut head = self.head.lock().await;
        let deadline = tokio::time::Instant::now() + WRITE_DEADLINE;
        let mut wait = TURN_WAIT;
        while tokio::time::Instant::now() < deadline {
            let position = parse_head(&head).unwrap_or_default();
            let hash = link(&position.head, &canonical);
            let new_head = format!("{} {}", position.next_seq + 1, hex::encode(hash));
            let mut invocation = APPEND.key(&*self.head_key);
            invocation
                .key(&*self.stream)
                .key(&*self.turn_key)
                .arg(head.as_str())
                .arg(&new_head)
                .arg(position.next_seq)
                .arg(hex::encode(position.head))
                .arg(hex::encode(hash))
                .arg(&canonical)
                .arg(self.writer.as_str());
            let reply: Result<(i64, String), StoreError> = self.backend.invoke(&invocation).await;
            match reply {
                Ok((-1, _)) => {
                    self.healthy.store(false, Ordering::Relaxed);
                    return Err(SinkError::Io(format!(
                        "{}: the chain's head key is gone though the stream has records; restore it (the last entry's seq + 1 and hash) before writing on",
                        self.head_key
                    )));
                }
                Ok((1, now)) => {
                    *head = now;
                    self.healthy.store(true, Ordering::Relaxed);
                    return Ok(());
                }
                Ok((2, actual)) => {
                    *head = actual;
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(TURN_WAIT_MAX);
                }
                Ok((_, actual)) => *head = actual,
                Err(error) => {
                    self.healthy.store(false, Ordering::Relaxed);
                    return Err(error.into());
                }
            }
        }
        Err(SinkError::Io(
            "the audit stream's head kept moving for 5 s; too many writers at once".into(),
        ))
    }

    fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    fn name(&self) -> &'static str {
        "redis-stream"
    }
}
