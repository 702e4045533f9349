//! [`ValidatorStore`] on the [`RedisBackend`]: one script per step, one round trip each.

use std::sync::LazyLock;
use std::time::Duration;

use redis::{Script, Value};

use super::store::{Locked, Snapshot, StoredValidators, Update, ValidatorStore};
use crate::backend::RedisBackend;
use crate::error::StoreError;
use crate::owner::OwnerToken;

static LOCK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        include_str!("../backend/now.lua"),
        include_str!("lock.lua")
    ))
});
static UNLOCK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        include_str!("../backend/now.lua"),
        include_str!("unlock.lua")
    ))
});

/// Validators and write locks in Redis, shared by every instance of the app.
///
/// Keys: `{prefix}cond:{<resource>}:v` for the validators (TTL: the layer's validator TTL) and
/// `{prefix}cond:{<resource>}:lock` for the write lock (TTL twice the lease). Both share their
/// text up to the suffix, so they share a hash tag and a cluster slot.
#[derive(Debug, Clone)]
pub struct RedisValidatorStore {
    backend: RedisBackend,
}

impl RedisValidatorStore {
    /// A store on this backend.
    #[must_use]
    pub fn new(backend: &RedisBackend) -> Self {
        Self {
            backend: backend.clone(),
        }
    }

    fn keys(&self, resource: &str) -> (String, String) {
        let base = format!("{}cond:{{{resource}}}:", self.backend.prefix());
        (format!("{base}lock"), format!("{base}v"))
    }

    async fn unlock_script(
        &self,
        resource: &str,
        owner: &str,
        action: &str,
        validators: Option<&StoredValidators>,
        ttl: Duration,
        seen: u64,
    ) -> Result<bool, StoreError> {
        let (lock, values) = self.keys(resource);
        // The generation is the script's to write: only the tag and date go in.
        let line = Snapshot {
            validators: validators.cloned(),
            generation: 0,
        }
        .encode();
        let tail = line.splitn(2, |&b| b == b' ').nth(1).unwrap_or_default();
        let mut invocation = UNLOCK.key(lock);
        invocation
            .key(values)
            .arg(owner)
            .arg(action)
            .arg(tail)
            .arg(millis(ttl))
            .arg(seen)
            .arg(
                self.backend
                    .client_time()
                    .map_or_else(String::new, |t| t.to_string()),
            );
        let done: i64 = self.backend.invoke(&invocation).await?;
        Ok(done == 1)
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl ValidatorStore for RedisValidatorStore {
    async fn get(&self, resource: &str) -> Result<Snapshot, StoreError> {
        let (_, values) = self.keys(resource);
        let raw: Option<Vec<u8>> = self.backend.query(redis::cmd("GET").arg(values)).await?;
        Ok(raw
            .as_deref()
            .map(Snapshot::decode)
            .transpose()?
            .unwrap_or_default())
    }

    async fn learn(
        &self,
        resource: &str,
        validators: &StoredValidators,
        seen: u64,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        self.unlock_script(resource, "", "learn", Some(validators), ttl, seen)
            .await
    }

    async fn lock(
        &self,
        resource: &str,
        owner: &OwnerToken,
        lease: Duration,
    ) -> Result<Locked, StoreError> {
        let (lock, values) = self.keys(resource);
        let mut invocation = LOCK.key(lock);
        invocation
            .key(values)
            .arg(owner.as_str())
            .arg(u64::try_from(lease.as_micros()).unwrap_or(u64::MAX).max(1))
            .arg(
                self.backend
                    .client_time()
                    .map_or_else(String::new, |t| t.to_string()),
            );
        let reply: Value = self.backend.invoke(&invocation).await?;
        let bad = || StoreError::Protocol(format!("conditional lock returned {reply:?}"));
        let Value::Array(items) = &reply else {
            return Err(bad());
        };
        let validators = |raw: Option<&Value>| match raw {
            Some(Value::BulkString(raw)) => Ok(Snapshot::decode(raw)?.validators),
            // Lua's false: nil over RESP2, a boolean over RESP3.
            None | Some(Value::Nil | Value::Boolean(false)) => Ok(None),
            Some(_) => Err(bad()),
        };
        match (items.first(), items.get(1)) {
            (Some(Value::Int(1)), raw) => Ok(Locked::Held {
                current: validators(raw)?,
            }),
            (Some(Value::Int(0)), Some(Value::Int(left))) => Ok(Locked::Busy {
                lease_left: Duration::from_micros(u64::try_from(*left).map_err(|_| bad())?),
                current: validators(items.get(2))?,
            }),
            _ => Err(bad()),
        }
    }

    async fn unlock(
        &self,
        resource: &str,
        owner: &OwnerToken,
        update: &Update,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let (action, validators) = match update {
            Update::Keep => ("keep", None),
            Update::Set(v) => ("set", Some(v)),
            Update::Forget => ("forget", None),
        };
        self.unlock_script(resource, owner.as_str(), action, validators, ttl, 0)
            .await
    }

    fn backend_name(&self) -> &'static str {
        "redis"
    }
}
