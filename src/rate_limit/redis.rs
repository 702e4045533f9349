//! [`RateLimitStore`] on the [`RedisBackend`]: one script, one round trip per decision.

use std::sync::LazyLock;

use redis::Script;

use super::quota::{Algorithm, Quota};
use super::store::{BucketKey, Decision, RateLimitStore};
use super::verdict::Verdict;
use crate::backend::RedisBackend;
use crate::error::StoreError;

static DECIDE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        include_str!("../backend/now.lua"),
        include_str!("decide.lua")
    ))
});

/// Rate-limit state in Redis, shared by every instance of the app.
///
/// Keys: `{prefix}rl:{<caller>}:<bucket>` for a bucket (TTL: until it is full again) and
/// `{prefix}rl:{<caller>}:override` for a negotiated quota (no TTL: it is configuration). The
/// caller is the hash tag, so a decision's two keys share a cluster slot.
#[derive(Debug, Clone)]
pub struct RedisRateLimitStore {
    backend: RedisBackend,
}

impl RedisRateLimitStore {
    /// A store on this backend.
    #[must_use]
    pub fn new(backend: &RedisBackend) -> Self {
        Self {
            backend: backend.clone(),
        }
    }

    fn key(&self, caller: &str, suffix: &str) -> String {
        format!("{}rl:{{{caller}}}:{suffix}", self.backend.prefix())
    }
}

fn algorithm_code(algorithm: Algorithm) -> u8 {
    match algorithm {
        Algorithm::SlidingWindow => 1,
        _ => 0,
    }
}

impl RateLimitStore for RedisRateLimitStore {
    async fn decide(
        &self,
        key: BucketKey<'_>,
        quota: &Quota,
        cost: u32,
    ) -> Result<Decision, StoreError> {
        let mut invocation = DECIDE.key(self.key(key.caller, key.bucket));
        if key.overridable {
            invocation.key(self.key(key.caller, "override"));
        }
        invocation
            .arg(algorithm_code(quota.algorithm()))
            .arg(quota.count())
            .arg(quota.period_micros())
            .arg(quota.burst())
            .arg(cost)
            .arg(
                self.backend
                    .client_time()
                    .map_or_else(String::new, |t| t.to_string()),
            );
        let reply: Vec<i64> = self.backend.invoke(&invocation).await?;
        let [
            allowed,
            remaining,
            reset_after,
            retry_after,
            now,
            algo,
            count,
            period,
            burst,
        ] = reply[..]
        else {
            return Err(StoreError::Protocol(format!("decide returned {reply:?}")));
        };
        let unsigned = |n: i64| {
            u64::try_from(n).map_err(|_| StoreError::Protocol(format!("decide returned {reply:?}")))
        };
        let narrow = |n: i64| {
            u32::try_from(n).map_err(|_| StoreError::Protocol(format!("decide returned {reply:?}")))
        };
        let algorithm = if algo == 1 {
            Algorithm::SlidingWindow
        } else {
            Algorithm::Gcra
        };
        let applied = Quota::new(
            narrow(count)?,
            std::time::Duration::from_micros(unsigned(period)?),
        )
        .with_burst(narrow(burst)?)
        .with_algorithm(algorithm);
        let verdict = Verdict {
            allowed: allowed == 1,
            remaining: unsigned(remaining)?,
            reset_after_us: unsigned(reset_after)?,
            retry_after_us: u64::try_from(retry_after).ok(),
        };
        Ok(Decision::new(verdict, applied, unsigned(now)?))
    }

    async fn set_override(&self, caller: &str, quota: Option<Quota>) -> Result<(), StoreError> {
        let key = self.key(caller, "override");
        let cmd = match quota {
            Some(q) => {
                q.validate("override")?;
                let value = format!(
                    "{} {} {} {}",
                    algorithm_code(q.algorithm()),
                    q.count(),
                    q.period_micros(),
                    q.burst()
                );
                redis::cmd("SET").arg(key).arg(value).clone()
            }
            None => redis::cmd("DEL").arg(key).clone(),
        };
        self.backend.query::<()>(&cmd).await
    }

    fn backend_name(&self) -> &'static str {
        "redis"
    }
}
