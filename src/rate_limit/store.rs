//! [`RateLimitStore`]: where rate-limit state lives, one trait for every backend.

use std::future::Future;

use super::quota::Quota;
use super::verdict::Verdict;
use crate::error::StoreError;

/// Which bucket a decision is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BucketKey<'a> {
    /// The caller, as [`Caller`](crate::principal::Caller) writes it (`s:acme`, `u:pat_1`, `ip:192.0.2.1`).
    pub caller: &'a str,
    /// The bucket: `default` for the tier quota, or a route rule's name.
    pub bucket: &'a str,
    /// Whether a per-caller override ([`RateLimitStore::set_override`]) replaces the quota.
    pub overridable: bool,
}

/// The outcome of one rate-limit decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Decision {
    /// Whether the request may proceed.
    pub allowed: bool,
    /// The quota that was applied: the configured one, or the caller's override.
    pub quota: Quota,
    /// Units left after this decision.
    pub remaining: u64,
    /// Microseconds until the caller holds its full capacity again (allowed), or until this
    /// request could pass (refused).
    pub reset_after_us: u64,
    /// Microseconds until this request could pass; `None` when allowed, or when its cost exceeds
    /// the capacity so it never can.
    pub retry_after_us: Option<u64>,
    /// The store's clock at the decision, in microseconds since the UNIX epoch.
    pub now_us: u64,
}

impl Decision {
    #[cfg_attr(not(any(feature = "memory", feature = "redis")), allow(dead_code))]
    pub(crate) fn new(verdict: Verdict, quota: Quota, now_us: u64) -> Self {
        Self {
            allowed: verdict.allowed,
            quota,
            remaining: verdict.remaining,
            reset_after_us: verdict.reset_after_us,
            retry_after_us: verdict.retry_after_us,
            now_us,
        }
    }

    /// The most units the caller can hold (`X-RateLimit-Limit`).
    #[must_use]
    pub fn limit(&self) -> u64 {
        u64::from(self.quota.capacity())
    }

    /// Units used out of the capacity (`X-RateLimit-Used`).
    #[must_use]
    pub fn used(&self) -> u64 {
        self.limit().saturating_sub(self.remaining)
    }
}

/// Rate-limit state behind one interface; every backend gives the same answers to the same
/// sequence of calls at the same times (the conformance suite in `tests/backends.rs` checks it).
///
/// Implementations are cheap `Clone` handles over shared state: clones share every bucket.
pub trait RateLimitStore: Clone + Send + Sync + 'static {
    /// Spends `cost` units of `quota` (or of the caller's override, when the key allows one) from
    /// the bucket, atomically, and says whether that was allowed. A refused request spends nothing.
    fn decide(
        &self,
        key: BucketKey<'_>,
        quota: &Quota,
        cost: u32,
    ) -> impl Future<Output = Result<Decision, StoreError>> + Send;

    /// The decision, when this store can make it without waiting (the memory store can), saving the
    /// allocation of a future; `None` (the default) sends the request through [`decide`](Self::decide).
    fn decide_immediately(
        &self,
        key: BucketKey<'_>,
        quota: &Quota,
        cost: u32,
    ) -> Option<Result<Decision, StoreError>> {
        let _ = (key, quota, cost);
        None
    }

    /// Sets (`Some`) or removes (`None`) a caller's negotiated quota, which then replaces the tier
    /// quota in that caller's `default` bucket.
    fn set_override(
        &self,
        caller: &str,
        quota: Option<Quota>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The backend's name for logs: `memory`, `redis`.
    fn backend_name(&self) -> &'static str;
}
