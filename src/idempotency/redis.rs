//! [`IdempotencyStore`] on the [`RedisBackend`]: one script per step, one round trip each.

use std::sync::LazyLock;
use std::time::Duration;

use bytes::Bytes;
use redis::{Script, Value};

use super::fingerprint::Fingerprint;
use super::record::Outcome;
use super::store::{Begin, IdempotencyStore, RecordKey, Terms};
use super::wire;
use crate::backend::RedisBackend;
use crate::error::StoreError;
use crate::owner::OwnerToken;

static BEGIN: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        include_str!("../backend/now.lua"),
        include_str!("begin.lua")
    ))
});
static FINISH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        include_str!("../backend/now.lua"),
        include_str!("finish.lua")
    ))
});

/// Idempotency records in Redis, shared by every instance of the app.
///
/// Keys: `{prefix}idem:{<scope> <key>}:lock` for the in-flight lock (`SET NX PX`, TTL twice the
/// lease; a released lock is kept one lease to count attempts) and `{prefix}idem:{<scope> <key>}:done` for the finished record (TTL the retention). Both
/// share their text up to the suffix, so they share a hash tag and a cluster slot.
#[derive(Debug, Clone)]
pub struct RedisIdempotencyStore {
    backend: RedisBackend,
}

impl RedisIdempotencyStore {
    /// A store on this backend.
    #[must_use]
    pub fn new(backend: &RedisBackend) -> Self {
        Self {
            backend: backend.clone(),
        }
    }

    fn keys(&self, key: RecordKey<'_>) -> (String, String) {
        let base = format!(
            "{}idem:{{{} {}}}:",
            self.backend.prefix(),
            key.scope,
            key.key
        );
        (format!("{base}lock"), format!("{base}done"))
    }

    fn now_arg(&self) -> String {
        self.backend
            .client_time()
            .map_or_else(String::new, |t| t.to_string())
    }

    async fn finish(
        &self,
        key: RecordKey<'_>,
        owner: &OwnerToken,
        outcome: Option<&Outcome>,
        terms: &Terms,
    ) -> Result<bool, StoreError> {
        let (lock, done) = self.keys(key);
        let mut invocation = FINISH.key(lock);
        invocation
            .key(done)
            .arg(owner.as_str())
            .arg(if outcome.is_some() {
                "complete"
            } else {
                "release"
            })
            .arg(micros(terms.retention))
            .arg(micros(terms.lease))
            .arg(self.now_arg())
            .arg(outcome.map(wire::encode).unwrap_or_default());
        let done: i64 = self.backend.invoke(&invocation).await?;
        Ok(done == 1)
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl IdempotencyStore for RedisIdempotencyStore {
    async fn begin(
        &self,
        key: RecordKey<'_>,
        fingerprint: &Fingerprint,
        terms: &Terms,
    ) -> Result<Begin, StoreError> {
        let (lock, done) = self.keys(key);
        let owner = OwnerToken::new();
        let mut invocation = BEGIN.key(lock);
        invocation
            .key(done)
            .arg(owner.as_str())
            .arg(fingerprint.to_hex())
            .arg(micros(terms.lease).max(1))
            .arg(micros(terms.retention))
            .arg(self.now_arg());
        let reply: Value = self.backend.invoke(&invocation).await?;
        let bad = || StoreError::Protocol(format!("idempotency begin returned {reply:?}"));
        let Value::Array(items) = &reply else {
            return Err(bad());
        };
        let int = |i: usize| match items.get(i) {
            Some(Value::Int(n)) => Ok(*n),
            _ => Err(bad()),
        };
        match int(0)? {
            0 => Ok(Begin::Started {
                owner,
                attempt: u32::try_from(int(1)?).map_err(|_| bad())?,
            }),
            1 => Ok(Begin::InFlight {
                lease_left: Duration::from_micros(u64::try_from(int(1)?).map_err(|_| bad())?),
            }),
            2 => Ok(Begin::Mismatch),
            3 => {
                let Some(Value::BulkString(record)) = items.get(1) else {
                    return Err(bad());
                };
                // Past the "COMPLETED FINGERPRINT\n" line the script matched.
                let start = record.iter().position(|&b| b == b'\n').ok_or_else(bad)?;
                let record = Bytes::copy_from_slice(&record[start + 1..]);
                wire::decode(record).map(Begin::Finished)
            }
            _ => Err(bad()),
        }
    }

    async fn complete(
        &self,
        key: RecordKey<'_>,
        owner: &OwnerToken,
        outcome: &Outcome,
        terms: &Terms,
    ) -> Result<bool, StoreError> {
        self.finish(key, owner, Some(outcome), terms).await
    }

    async fn release(
        &self,
        key: RecordKey<'_>,
        owner: &OwnerToken,
        terms: &Terms,
    ) -> Result<bool, StoreError> {
        self.finish(key, owner, None, terms).await
    }

    fn backend_name(&self) -> &'static str {
        "redis"
    }
}
