//! [`VersionPinStore`]: the version each caller is pinned to, and who still calls deprecated
//! versions.

use std::future::Future;

use super::version::ApiVersion;
use crate::error::StoreError;

/// One caller's use of a deprecated version over a report's days.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct Usage {
    /// The caller, as [`Caller::key`](crate::principal::Caller::key) writes it (`u:pat_1`,
    /// `s:acme`, `ip:192.0.2.1`).
    pub caller: String,
    /// Calls over the report's days.
    pub calls: u64,
    /// The last day with a call, `YYYY-MM-DD` (UTC).
    pub last_seen: String,
}

/// Pins and usage counts behind one interface; every backend gives the same answers to the
/// same sequence of calls (the conformance suite in `tests/backends.rs` checks it). Days are
/// numbered from 1970-01-01 (UTC).
pub trait VersionPinStore: Clone + Send + Sync + 'static {
    /// The version `caller` is pinned to.
    fn pinned(
        &self,
        caller: &str,
    ) -> impl Future<Output = Result<Option<ApiVersion>, StoreError>> + Send;

    /// Pins `caller` to `version` unless it is pinned already, in one step; the pin in force.
    fn pin_if_absent(
        &self,
        caller: &str,
        version: ApiVersion,
    ) -> impl Future<Output = Result<ApiVersion, StoreError>> + Send;

    /// Sets (`Some`) or removes (`None`) a caller's pin: an upgrade, as Stripe's dashboard does.
    fn set_pin(
        &self,
        caller: &str,
        version: Option<ApiVersion>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Counts one call by `caller` to (deprecated) `version` on `day`.
    fn record_call(
        &self,
        version: ApiVersion,
        caller: &str,
        day: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Counts a call without making the answer wait: the default spawns
    /// [`record_call`](Self::record_call) on the current Tokio runtime (failures are logged);
    /// a store that can count at once (memory) does.
    fn record_call_detached(&self, version: ApiVersion, caller: String, day: u64) {
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let store = self.clone();
            runtime.spawn(async move {
                if let Err(error) = store.record_call(version, &caller, day).await {
                    tracing::warn!(layer = "versioning", backend = store.backend_name(), %error,
                        "could not count a deprecated call");
                }
            });
        }
    }

    /// Who called `version` on the days `first..=last`, most calls first.
    fn usage(
        &self,
        version: ApiVersion,
        first: u64,
        last: u64,
    ) -> impl Future<Output = Result<Vec<Usage>, StoreError>> + Send;

    /// The backend's name for logs: `memory`, `redis`.
    fn backend_name(&self) -> &'static str;
}

/// Sums per-day counts into a report, most calls first (then by caller, so it is stable).
#[cfg_attr(not(any(feature = "memory", feature = "redis")), allow(dead_code))]
pub(crate) fn report(days: impl IntoIterator<Item = (u64, Vec<(String, u64)>)>) -> Vec<Usage> {
    let mut totals: std::collections::HashMap<String, (u64, u64)> =
        std::collections::HashMap::new();
    for (day, counts) in days {
        for (caller, calls) in counts {
            let entry = totals.entry(caller).or_insert((0, day));
            entry.0 += calls;
            entry.1 = entry.1.max(day);
        }
    }
    let mut usage: Vec<Usage> = totals
        .into_iter()
        .map(|(caller, (calls, last))| Usage {
            caller,
            calls,
            last_seen: crate::clock::civil_date(last),
        })
        .collect();
    usage.sort_by(|a, b| b.calls.cmp(&a.calls).then_with(|| a.caller.cmp(&b.caller)));
    usage
}
