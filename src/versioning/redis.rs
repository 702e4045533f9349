//! [`VersionPinStore`] on the [`RedisBackend`].

use std::collections::HashMap;
use std::sync::LazyLock;

use redis::Script;

use super::store::{Usage, VersionPinStore, report};
use super::version::ApiVersion;
use crate::backend::RedisBackend;
use crate::error::StoreError;

/// Pins and usage counts in Redis, shared by every instance of the app.
///
/// Keys: `{prefix}ver:pin:{<caller>}` for a pin (no TTL: it is the caller's contract, and only
/// principals are pinned), and `{prefix}ver:use:{<version>}:<day>` for a day's counts, a hash of
/// caller to calls (TTL 90 days, at most 10,000 callers, later ones counted as `(others)`). A
/// day's counts share the version's hash tag, so a report reads them from one slot.
#[derive(Debug, Clone)]
pub struct RedisVersionPinStore {
    backend: RedisBackend,
}

/// How long a day's counts live.
const KEEP_SECS: u64 = 90 * 86_400;

/// The most callers a version's day counts apart; later ones are counted as `(others)`.
const MAX_CALLERS_PER_DAY: u64 = 10_000;

static RECORD: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("record.lua")));

impl RedisVersionPinStore {
    /// A store on this backend.
    #[must_use]
    pub fn new(backend: &RedisBackend) -> Self {
        Self {
            backend: backend.clone(),
        }
    }

    fn pin_key(&self, caller: &str) -> String {
        format!("{}ver:pin:{{{caller}}}", self.backend.prefix())
    }

    fn day_key(&self, version: ApiVersion, day: u64) -> String {
        format!("{}ver:use:{{{version}}}:{day}", self.backend.prefix())
    }
}

fn parse(raw: Option<String>) -> Result<Option<ApiVersion>, StoreError> {
    raw.map(|v| {
        ApiVersion::parse(&v).map_err(|_| StoreError::Protocol(format!("version pin `{v}`")))
    })
    .transpose()
}

impl VersionPinStore for RedisVersionPinStore {
    async fn pinned(&self, caller: &str) -> Result<Option<ApiVersion>, StoreError> {
        parse(
            self.backend
                .query(redis::cmd("GET").arg(self.pin_key(caller)))
                .await?,
        )
    }

    async fn pin_if_absent(
        &self,
        caller: &str,
        version: ApiVersion,
    ) -> Result<ApiVersion, StoreError> {
        // `SET NX GET` (Redis 7): one round trip, and the pin already there if any.
        let earlier: Option<String> = self
            .backend
            .query(
                redis::cmd("SET")
                    .arg(self.pin_key(caller))
                    .arg(version.to_string())
                    .arg("NX")
                    .arg("GET"),
            )
            .await?;
        Ok(parse(earlier)?.unwrap_or(version))
    }

    async fn set_pin(&self, caller: &str, version: Option<ApiVersion>) -> Result<(), StoreError> {
        let key = self.pin_key(caller);
        let cmd = match version {
            Some(v) => redis::cmd("SET").arg(key).arg(v.to_string()).clone(),
            None => redis::cmd("DEL").arg(key).clone(),
        };
        self.backend.query::<()>(&cmd).await
    }

    async fn record_call(
        &self,
        version: ApiVersion,
        caller: &str,
        day: u64,
    ) -> Result<(), StoreError> {
        let mut invocation = RECORD.key(self.day_key(version, day));
        invocation
            .arg(caller)
            .arg(MAX_CALLERS_PER_DAY)
            .arg(KEEP_SECS);
        self.backend.invoke::<i64>(&invocation).await.map(|_| ())
    }

    async fn usage(
        &self,
        version: ApiVersion,
        first: u64,
        last: u64,
    ) -> Result<Vec<Usage>, StoreError> {
        if last < first {
            return Ok(Vec::new());
        }
        let days: Vec<u64> = (first..=last).collect();
        let mut pipe = redis::pipe();
        for day in &days {
            pipe.cmd("HGETALL").arg(self.day_key(version, *day));
        }
        let counts: Vec<HashMap<String, u64>> = self.backend.query_pipeline(&pipe).await?;
        Ok(report(days.into_iter().zip(counts).map(
            |(day, callers)| (day, callers.into_iter().collect()),
        )))
    }

    fn backend_name(&self) -> &'static str {
        "redis"
    }
}
