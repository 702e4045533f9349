//! Metrics through the [`metrics`](https://docs.rs/metrics) facade (feature `metrics`): install
//! any recorder (Prometheus, StatsD, OpenTelemetry) and the layers report to it. Without the
//! feature every call here is empty.
//!
//! | name | kind | labels |
//! |---|---|---|
//! | `api_policy_decisions_total` | counter | `layer`, `outcome` |
//! | `api_policy_store_errors_total` | counter | `layer`, `backend` |
//! | `api_policy_store_seconds` | histogram | `layer`, `backend` |
//! | `api_policy_idempotency_replays_total` | counter | |
//! | `api_policy_audit_queue_depth` | gauge | |
//! | `api_policy_audit_write_seconds` | histogram | `sink` |
//!
//! Outcomes by layer: `rate_limit` allowed, limited, store_error; `jwt_auth` authenticated,
//! anonymous, malformed, unauthenticated, forbidden, unavailable; `idempotency` started,
//! replayed, in_use, reused, unavailable; `conditional` proceed, not_modified,
//! precondition_failed, precondition_required; `versioning` served, deprecated, gone, refused;
//! `audit` written, failed, dropped; `webhook` accepted, refused.

/// Counts one decision of a layer, both names literals: `decision!("rate_limit", "allowed")`.
/// Literal labels make a static key, so counting a decision allocates nothing; the layers count
/// one on every request.
macro_rules! decision {
    ($layer:literal, $outcome:literal) => {{
        #[cfg(feature = "metrics")]
        ::metrics::counter!("api_policy_decisions_total", "layer" => $layer, "outcome" => $outcome)
            .increment(1);
    }};
}
pub(crate) use decision;

/// Counts one decision of a layer whose name is known only at run time (the idempotency core
/// serves two layers): its labels are allocated on each call, so [`decision!`] is the one for a
/// request's every path.
#[inline]
pub(crate) fn decision_of(layer: &'static str, outcome: &'static str) {
    #[cfg(feature = "metrics")]
    metrics::counter!("api_policy_decisions_total", "layer" => layer, "outcome" => outcome)
        .increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = (layer, outcome);
}

/// Counts a store failure.
#[inline]
pub(crate) fn store_error(layer: &'static str, backend: &'static str) {
    #[cfg(feature = "metrics")]
    metrics::counter!("api_policy_store_errors_total", "layer" => layer, "backend" => backend)
        .increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = (layer, backend);
}

/// Records how long a store took to answer.
#[inline]
pub(crate) fn store_latency(layer: &'static str, backend: &'static str, seconds: f64) {
    #[cfg(feature = "metrics")]
    metrics::histogram!("api_policy_store_seconds", "layer" => layer, "backend" => backend)
        .record(seconds);
    #[cfg(not(feature = "metrics"))]
    let _ = (layer, backend, seconds);
}

/// Counts an idempotent replay.
#[inline]
pub(crate) fn idempotency_replay() {
    #[cfg(feature = "metrics")]
    metrics::counter!("api_policy_idempotency_replays_total").increment(1);
}

/// Sets how many audit records wait for the writer.
#[inline]
pub(crate) fn audit_queue_depth(depth: usize) {
    #[cfg(feature = "metrics")]
    metrics::gauge!("api_policy_audit_queue_depth").set(depth as f64);
    #[cfg(not(feature = "metrics"))]
    let _ = depth;
}

/// Records how long an audit write took.
#[inline]
pub(crate) fn audit_write(sink: &'static str, seconds: f64) {
    #[cfg(feature = "metrics")]
    metrics::histogram!("api_policy_audit_write_seconds", "sink" => sink).record(seconds);
    #[cfg(not(feature = "metrics"))]
    let _ = (sink, seconds);
}
