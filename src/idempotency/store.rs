//! [`IdempotencyStore`]: where records of keyed requests live, one trait for every backend.

use std::future::Future;
use std::time::Duration;

use super::fingerprint::Fingerprint;
use super::record::Outcome;
use crate::error::StoreError;
use crate::owner::OwnerToken;

/// Which record a request is about: the caller's scope and the key it sent. The same key in two
/// scopes names two unrelated records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordKey<'a> {
    /// The caller (`u:pat_1`, `s:acme`, `ip:192.0.2.1`, `anonymous`) or, for webhooks, the endpoint.
    pub scope: &'a str,
    /// The `Idempotency-Key`, or a webhook's event id.
    pub key: &'a str,
}

/// How long records last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Terms {
    /// How long an in-flight lock holds before a retry may take it over (the first attempt is
    /// presumed crashed). Set it above the slowest handler's running time.
    pub lease: Duration,
    /// How long a finished request is replayed, counted from its completion.
    pub retention: Duration,
}

impl Default for Terms {
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(60),
            retention: Duration::from_secs(24 * 60 * 60),
        }
    }
}

/// What [`IdempotencyStore::begin`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Begin {
    /// No live record: this attempt now holds the in-flight lock and runs the handler.
    Started {
        /// The lock's owner token, for [`complete`](IdempotencyStore::complete) and
        /// [`release`](IdempotencyStore::release).
        owner: OwnerToken,
        /// 1 for the first attempt; more when earlier attempts started and did not finish
        /// (cancelled, crashed, or released after a 5xx), so the handler can look for their
        /// partial work.
        attempt: u32,
    },
    /// Another attempt with the same fingerprint holds the lock.
    InFlight {
        /// When its lease ends at the latest.
        lease_left: Duration,
    },
    /// A live record (in flight or finished) has a different fingerprint.
    Mismatch,
    /// The request finished within the retention period.
    Finished(Outcome),
}

/// Records of keyed requests behind one interface; every backend gives the same answers to the
/// same sequence of calls at the same times (the conformance suite in `tests/backends.rs` checks
/// it). Times are the store's clock: the backend's clock for memory; for Redis the server's, or the
/// backend's client clock when one is set (tests).
///
/// Implementations are cheap `Clone` handles over shared state.
pub trait IdempotencyStore: Clone + Send + Sync + 'static {
    /// Atomically: replays a finished record, refuses a live one, or takes the in-flight lock
    /// (creating the record, or taking over one whose lease ended or whose retention passed).
    fn begin(
        &self,
        key: RecordKey<'_>,
        fingerprint: &Fingerprint,
        terms: &Terms,
    ) -> impl Future<Output = Result<Begin, StoreError>> + Send;

    /// Stores the outcome for the retention period, if `owner` still holds the lock (a
    /// compare-and-set); `false` when it does not (its lease ended and another attempt took over).
    fn complete(
        &self,
        key: RecordKey<'_>,
        owner: &OwnerToken,
        outcome: &Outcome,
        terms: &Terms,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Ends `owner`'s lock without an outcome, so the next attempt runs the handler; `false`
    /// when `owner` no longer held it.
    fn release(
        &self,
        key: RecordKey<'_>,
        owner: &OwnerToken,
        terms: &Terms,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Releases from a destructor (a cancelled request), where nothing can be awaited. The
    /// default spawns [`release`](Self::release) on the current Tokio runtime, if there is one;
    /// without one the lease ends the lock instead.
    fn release_detached(&self, scope: String, key: String, owner: OwnerToken, terms: Terms) {
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let store = self.clone();
            runtime.spawn(async move {
                let key = RecordKey {
                    scope: &scope,
                    key: &key,
                };
                if let Err(error) = store.release(key, &owner, &terms).await {
                    tracing::warn!(layer = "idempotency", backend = store.backend_name(), %error,
                        "could not release a cancelled request's lock; its lease will end it");
                }
            });
        }
    }

    /// Waits, at most `patience`, for the in-flight lock that [`begin`](Self::begin) found
    /// (another attempt running) to end; a layer that waits for in-flight keys then asks again.
    /// The default waits all of `patience` (the layer backs off, from 5 ms doubling to 200 ms); a
    /// store that can tell when an attempt ends wakes the waiter then, and its replay follows at
    /// once (the memory store does).
    fn until_unlocked(
        &self,
        key: RecordKey<'_>,
        patience: Duration,
    ) -> impl Future<Output = ()> + Send {
        let _ = key;
        tokio::time::sleep(patience)
    }

    /// The backend's name for logs: `memory`, `redis`.
    fn backend_name(&self) -> &'static str;
}
