//! [`store_failed`]: what every layer does when its store fails while it decides.

use std::fmt::Display;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::FailurePolicy;

/// Counts a store's failure (the layer's own counter, when it keeps one, and the
/// `api_policy_store_errors_total` metric), traces it with the layer, the backend and what the
/// policy makes of it, and hands back the policy: [`FailurePolicy::Open`] lets the request
/// through without the store, [`FailurePolicy::Closed`] refuses it (each layer says how).
pub(crate) fn store_failed(
    layer: &'static str,
    backend: &'static str,
    error: &dyn Display,
    policy: FailurePolicy,
    failures: Option<&AtomicU64>,
) -> FailurePolicy {
    if let Some(failures) = failures {
        failures.fetch_add(1, Ordering::Relaxed);
    }
    crate::metrics::store_error(layer, backend);
    match policy {
        FailurePolicy::Open => {
            tracing::warn!(layer, backend, %error, "store failed; going on without it (fail open)");
        }
        _ => {
            tracing::error!(layer, backend, %error, "store failed; refusing (fail closed)");
        }
    }
    policy
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_is_counted_and_the_policy_handed_back() {
        let failures = AtomicU64::new(0);
        let error = crate::StoreError::Protocol("gone".into());
        for policy in [FailurePolicy::Open, FailurePolicy::Closed] {
            assert_eq!(
                store_failed("test", "memory", &error, policy, Some(&failures)),
                policy
            );
        }
        assert_eq!(failures.load(Ordering::Relaxed), 2);
        assert_eq!(
            store_failed("test", "memory", &error, FailurePolicy::Open, None),
            FailurePolicy::Open
        );
    }
}
