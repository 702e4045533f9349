//! [`RedisBackend`]: state shared by every instance of the app through one Redis.
//!
//! The handle owns one multiplexed connection (redis' `ConnectionManager`): it connects lazily,
//! reconnects in the background after a failure, and pipelines concurrent commands. Every command
//! is bounded by a timeout, so a Redis that vanishes costs a request at most that long; what the
//! request then gets is the layer's failure policy.
//!
//! # Keys
//! Every key starts with the prefix (default `api-policy:`) and carries a hash tag (`{...}`) around
//! the part that all keys of one decision share, so one script's keys land in one Redis Cluster slot.
//! Every key holding per-request state has a TTL.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{FromRedisValue, ScriptInvocation};

use crate::clock::{Clock, SharedClock};
use crate::error::{ConfigError, StoreError};

/// A Redis connection handle shared by every store; cheap to clone.
#[derive(Clone)]
pub struct RedisBackend {
    connection: ConnectionManager,
    prefix: Arc<str>,
    timeout: Duration,
    clock: Option<SharedClock>,
}

impl std::fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackend")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .field("client_clock", &self.clock)
            .finish_non_exhaustive()
    }
}

impl RedisBackend {
    /// Starts configuring a backend for `url` (`redis://host:port/db`).
    pub fn builder(url: impl Into<String>) -> RedisBackendBuilder {
        RedisBackendBuilder {
            url: url.into(),
            prefix: "api-policy:".into(),
            timeout: Duration::from_millis(500),
            clock: None,
        }
    }

    /// The key prefix.
    #[must_use]
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The time to pass to scripts: `None` means the Redis server's own clock (`TIME`), which every
    /// instance shares whatever their clocks say.
    pub(crate) fn client_time(&self) -> Option<u64> {
        self.clock.as_ref().map(|c| c.now_micros())
    }

    /// Runs a script invocation: one round trip (a first call after a Redis restart reloads the
    /// script once), bounded by the timeout.
    pub(crate) async fn invoke<T: FromRedisValue>(
        &self,
        invocation: &ScriptInvocation<'_>,
    ) -> Result<T, StoreError> {
        let mut connection = self.connection.clone();
        match tokio::time::timeout(self.timeout, invocation.invoke_async(&mut connection)).await {
            Ok(result) => Ok(result?),
            Err(_) => Err(StoreError::Timeout(self.timeout)),
        }
    }

    /// Runs a pipeline of commands in one round trip, bounded by the timeout.
    pub(crate) async fn query_pipeline<T: FromRedisValue>(
        &self,
        pipe: &redis::Pipeline,
    ) -> Result<T, StoreError> {
        let mut connection = self.connection.clone();
        match tokio::time::timeout(self.timeout, pipe.query_async(&mut connection)).await {
            Ok(result) => Ok(result?),
            Err(_) => Err(StoreError::Timeout(self.timeout)),
        }
    }

    /// Runs one command, bounded by the timeout.
    pub(crate) async fn query<T: FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, StoreError> {
        let mut connection = self.connection.clone();
        match tokio::time::timeout(self.timeout, cmd.query_async(&mut connection)).await {
            Ok(result) => Ok(result?),
            Err(_) => Err(StoreError::Timeout(self.timeout)),
        }
    }
}

/// Builds a [`RedisBackend`].
#[derive(Debug)]
#[must_use]
pub struct RedisBackendBuilder {
    url: String,
    prefix: String,
    timeout: Duration,
    clock: Option<SharedClock>,
}

impl RedisBackendBuilder {
    /// The prefix of every key (default `api-policy:`); it may not contain `{` or `}`, which would
    /// move the cluster hash tag.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long one command may take, connecting included (default 500 ms).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Decides by this clock instead of the Redis server's. For tests with a
    /// [`ManualClock`](crate::clock::ManualClock); in production every instance should share the
    /// server's clock.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// The backend. It connects on first use, so it can be built while Redis is still down; it
    /// must be built inside a Tokio runtime.
    ///
    /// # Errors
    /// A [`ConfigError`] for an unparsable URL, a prefix with braces, or a zero timeout.
    pub fn build(self) -> Result<RedisBackend, ConfigError> {
        if self.prefix.contains(['{', '}']) {
            return Err(ConfigError::new(
                "redis.prefix",
                "may not contain `{` or `}`",
            ));
        }
        if self.timeout.is_zero() {
            return Err(ConfigError::new("redis.timeout", "must be more than zero"));
        }
        let client = redis::Client::open(self.url.as_str())
            .map_err(|e| ConfigError::new("redis.url", format!("`{}`: {e}", self.url)))?;
        // Reconnection attempts back off up to half the timeout, so a request that waits on one
        // still ends within its timeout.
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
            .set_number_of_retries(2)
            .set_min_delay(Duration::from_millis(20))
            .set_max_delay(self.timeout / 2);
        let connection = client
            .get_connection_manager_lazy(config)
            .map_err(|e| ConfigError::new("redis.url", e.to_string()))?;
        Ok(RedisBackend {
            connection,
            prefix: self.prefix.into(),
            timeout: self.timeout,
            clock: self.clock,
        })
    }
}
