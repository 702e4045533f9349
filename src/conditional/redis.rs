//! [`ValidatorStore`] on the [`RedisBackend`]: one script per step, one round trip each.

use std::sync::LazyLock;
use std::time::Duration;

use redis::{Script, Value};

use super::store::{Locked, StoredValidators, Update, ValidatorStore};
use crate::backend::RedisBackend;
use crate::error::StoreError;
use crate::owner::OwnerToken;

static LOCK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        include_str!("../backend/now.lua"),
        include_str!("lock.lua")
    ))
});
static UNLOCK: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("unlock.lua")));

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
    ) -> Result<bool, StoreError> {
        let (lock, values) = self.keys(resource);
        let mut invocation = UNLOCK.key(lock);
        invocation
            .key(values)
            .arg(owner)
            .arg(action)
            .arg(validators.map(StoredValidators::encode).unwrap_or_default())
            .arg(millis(ttl));
        let done: i64 = self.backend.invoke(&invocation).await?;
        Ok(done == 1)
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl ValidatorStore for RedisValidatorStore {
    async fn get(&self, resource: &str) -> Result<Option<StoredValidators>, StoreError> {
        let (_, values) = self.keys(resource);
        let raw: Option<Vec<u8>> = self.backend.query(redis::cmd("GET").arg(values)).await?;
        raw.as_deref().map(StoredValidators::decode).transpose()
    }

    async fn learn(
        &self,
        resource: &str,
        validators: &StoredValidators,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        self.unlock_script(resource, "", "learn", Some(validators), ttl)
            .await
            .map(|_| ())
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
        match (items.first(), items.get(1)) {
            (Some(Value::Int(1)), Some(Value::BulkString(raw))) => Ok(Locked::Held {
                current: Some(StoredValidators::decode(raw)?),
            }),
            (Some(Value::Int(1)), _) => Ok(Locked::Held { current: None }),
            (Some(Value::Int(0)), Some(Value::Int(left))) => Ok(Locked::Busy {
                lease_left: Duration::from_micros(u64::try_from(*left).map_err(|_| bad())?),
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
        self.unlock_script(resource, owner.as_str(), action, validators, ttl)
            .await
    }

    fn backend_name(&self) -> &'static str {
        "redis"
    }
}
