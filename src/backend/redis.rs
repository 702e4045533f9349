//! [`RedisBackend`]: state shared by every instance of the app through one Redis.
//!
//! The handle owns one multiplexed connection (redis' `ConnectionManager`): it connects lazily,
//! reconnects in the background after a failure, and pipelines concurrent commands. Every command
//! is bounded by a timeout, so a Redis that vanishes costs a request at most that long; what the
//! request then gets is the layer's failure policy.
//!
//! With the `cluster` feature, [`RedisBackend::cluster`] talks to a Redis Cluster instead,
//! through redis' async cluster client: it learns the slots from any reachable node, follows
//! `MOVED`/`ASK` redirects, and reconnects to a node that comes back.
//!
//! # Keys
//! Every key starts with the prefix (default `api-policy:`) and carries a hash tag (`{...}`) around
//! the part that all keys of one decision share, so one script's keys land in one Redis Cluster slot.
//! Every key holding per-request state has a TTL.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, FromRedisValue, Pipeline, RedisFuture, ScriptInvocation, Value};

use crate::clock::{Clock, SharedClock};
use crate::error::{ConfigError, StoreError};

/// A Redis connection handle shared by every store; cheap to clone.
#[derive(Clone)]
pub struct RedisBackend {
    connection: Connection,
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

/// One Redis, or a Redis Cluster: the stores send the same commands to either.
#[derive(Clone)]
enum Connection {
    Single(ConnectionManager),
    #[cfg(feature = "cluster")]
    Cluster(redis::cluster_async::ClusterConnection),
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            #[cfg(feature = "cluster")]
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(pipeline, offset, count),
            #[cfg(feature = "cluster")]
            Self::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            #[cfg(feature = "cluster")]
            Self::Cluster(c) => c.get_db(),
        }
    }
}

/// Where a builder connects.
#[derive(Debug)]
enum Target {
    Single(String),
    #[cfg(feature = "cluster")]
    Cluster(Vec<String>),
}

impl RedisBackend {
    /// Starts configuring a backend for `url` (`redis://host:port/db`).
    pub fn builder(url: impl Into<String>) -> RedisBackendBuilder {
        Self::builder_for(Target::Single(url.into()))
    }

    /// Starts configuring a backend for a Redis Cluster: `nodes` are the URLs of some of its
    /// nodes (`redis://host:7000`), from which the client learns the rest. Every key a script
    /// touches shares a hash tag, so each decision stays one round trip to one node.
    #[cfg(feature = "cluster")]
    pub fn cluster<N: Into<String>>(nodes: impl IntoIterator<Item = N>) -> RedisBackendBuilder {
        Self::builder_for(Target::Cluster(nodes.into_iter().map(Into::into).collect()))
    }

    fn builder_for(target: Target) -> RedisBackendBuilder {
        RedisBackendBuilder {
            target,
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
    target: Target,
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
    /// A [`ConfigError`] for an unparsable URL (or no cluster node), a prefix with braces, or a
    /// zero timeout.
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
        let connection = match &self.target {
            Target::Single(url) => single(url, self.timeout)?,
            #[cfg(feature = "cluster")]
            Target::Cluster(nodes) => cluster(nodes, self.timeout)?,
        };
        Ok(RedisBackend {
            connection,
            prefix: self.prefix.into(),
            timeout: self.timeout,
            clock: self.clock,
        })
    }
}

fn single(url: &str, timeout: Duration) -> Result<Connection, ConfigError> {
    let client = redis::Client::open(url)
        .map_err(|e| ConfigError::new("redis.url", format!("`{url}`: {e}")))?;
    // Reconnection attempts back off up to half the timeout, so a request that waits on one
    // still ends within its timeout.
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout))
        .set_number_of_retries(2)
        .set_min_delay(Duration::from_millis(20))
        .set_max_delay(timeout / 2);
    let connection = client
        .get_connection_manager_lazy(config)
        .map_err(|e| ConfigError::new("redis.url", e.to_string()))?;
    Ok(Connection::Single(connection))
}

#[cfg(feature = "cluster")]
fn cluster(nodes: &[String], timeout: Duration) -> Result<Connection, ConfigError> {
    use redis::cluster::{ClusterClient, ClusterConfig};
    if nodes.is_empty() {
        return Err(ConfigError::new(
            "redis.cluster",
            "a cluster needs at least one node URL",
        ));
    }
    for node in nodes {
        redis::Client::open(node.as_str())
            .map_err(|e| ConfigError::new("redis.cluster", format!("`{node}`: {e}")))?;
    }
    let max_wait = u64::try_from((timeout / 2).as_millis()).unwrap_or(u64::MAX);
    // Few retries, waiting at most half the timeout: a request that meets a failing node still
    // ends within its timeout, and a node that is gone gets reconnected in the background.
    let client = ClusterClient::builder(nodes.iter().map(String::as_str))
        .connection_timeout(timeout)
        .response_timeout(timeout)
        .retries(2)
        .min_retry_wait(20)
        .max_retry_wait(max_wait.max(20))
        .build()
        .map_err(|e| ConfigError::new("redis.cluster", e.to_string()))?;
    // Connects in the background: the backend can be built while the cluster is still down.
    let config = ClusterConfig::new()
        .set_connection_timeout(timeout)
        .set_response_timeout(timeout);
    Ok(Connection::Cluster(
        client.get_pending_async_connection_with_config(config),
    ))
}
