//! The `metrics` feature: decisions and store latencies reach an installed recorder (here the
//! Prometheus one), and move with traffic.

use std::time::Duration;

use api_policy::backend::MemoryBackend;
use api_policy::idempotency::{IdempotencyLayer, MemoryIdempotencyStore};
use api_policy::principal::{KeyExtractor, Principal};
use api_policy::rate_limit::{MemoryRateLimitStore, Quota, RateLimitLayer};
use axum::Router;
use axum::body::Body;
use axum::routing::post;
use http::Request;
use metrics_exporter_prometheus::PrometheusBuilder;
use tower::ServiceExt;

/// The value of the counter line with these labels, 0 when absent.
fn counter(text: &str, name: &str, labels: &str) -> u64 {
    text.lines()
        .find(|l| l.starts_with(name) && l.contains(labels))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

#[tokio::test]
async fn decisions_reach_the_recorder() {
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).expect("the only recorder of this test binary");

    let keys = std::collections::HashMap::from([("k".to_string(), Principal::service("acme"))]);
    let limits = RateLimitLayer::builder(MemoryRateLimitStore::new(&MemoryBackend::new()))
        .tier("default", Quota::new(3, Duration::from_secs(60)))
        .key_extractor(
            KeyExtractor::new()
                .api_key_header("x-api-key", keys)
                .unwrap(),
        )
        .build()
        .unwrap();
    let idempotency = IdempotencyLayer::builder(MemoryIdempotencyStore::new(&MemoryBackend::new()))
        .build()
        .unwrap();
    let app = Router::new()
        .route("/orders", post(|| async { "ok" }))
        .layer(idempotency)
        .layer(limits);
    let send = |key: &'static str| {
        let app = app.clone();
        async move {
            let request = Request::post("/orders")
                .header("x-api-key", "k")
                .header("idempotency-key", key)
                .body(Body::empty())
                .unwrap();
            app.oneshot(request).await.unwrap().status()
        }
    };
    let before = handle.render();
    for key in ["a", "a", "b", "c", "d"] {
        send(key).await;
    }
    let after = handle.render();
    let moved =
        |name: &str, labels: &str| counter(&after, name, labels) - counter(&before, name, labels);
    let decisions = "api_policy_decisions_total";
    assert_eq!(
        moved(decisions, "layer=\"rate_limit\",outcome=\"allowed\""),
        3,
        "{after}"
    );
    assert_eq!(
        moved(decisions, "layer=\"rate_limit\",outcome=\"limited\""),
        2
    );
    assert_eq!(
        moved(decisions, "layer=\"idempotency\",outcome=\"started\""),
        2
    );
    assert_eq!(
        moved(decisions, "layer=\"idempotency\",outcome=\"replayed\""),
        1
    );
    assert_eq!(moved("api_policy_idempotency_replays_total", ""), 1);
    assert!(
        after.contains("api_policy_store_seconds"),
        "store latencies are recorded"
    );
}
