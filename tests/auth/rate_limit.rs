//! Composed with the rate limiter: token subjects and tiers, and anonymous callers.

use std::convert::Infallible;

use api_policy::backend::MemoryBackend;
use axum::body::Body;
use http::{Request, Response, StatusCode};
use serde_json::json;
use tower::{Layer, ServiceExt};

use crate::app::{bearer, header, router};
use crate::tokens::{claims, hs_builder, hs256};

#[tokio::test]
async fn the_rate_limiter_counts_token_subjects_and_gives_anonymous_callers_their_tier() {
    use api_policy::rate_limit::{MemoryRateLimitStore, Quota, RateLimitLayer};
    let limiter = RateLimitLayer::builder(MemoryRateLimitStore::new(&MemoryBackend::new()))
        .tier("free", Quota::per_minute(2))
        .tier("pro", Quota::per_minute(100))
        .tier("anonymous", Quota::per_minute(1))
        .default_tier("free")
        .build()
        .unwrap();
    let auth = hs_builder().optional().build().unwrap();
    let app = auth.layer(limiter.layer(router()));
    let send = |request: Request<Body>| {
        let app = app.clone();
        async move {
            app.oneshot(request)
                .await
                .unwrap_or_else(|e: Infallible| match e {})
        }
    };
    let limit_of = |response: &Response<_>| header(response, "x-ratelimit-limit");

    let alice = hs256(&claims("alice", json!({"tier": "free"})));
    let bob = hs256(&claims("bob", json!({"tier": "free"})));
    let pro = hs256(&claims("carol", json!({"tier": "pro"})));
    for _ in 0..2 {
        let response = send(bearer("/whoever", &alice)).await;
        assert_eq!(
            (response.status(), limit_of(&response)),
            (StatusCode::OK, "2".into())
        );
    }
    assert_eq!(
        send(bearer("/whoever", &alice)).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        send(bearer("/whoever", &bob)).await.status(),
        StatusCode::OK,
        "bob has his own bucket"
    );
    assert_eq!(limit_of(&send(bearer("/whoever", &pro)).await), "100");

    let anonymous = || Request::get("/whoever").body(Body::empty()).unwrap();
    let first = send(anonymous()).await;
    assert_eq!(
        (first.status(), limit_of(&first)),
        (StatusCode::OK, "1".into())
    );
    assert_eq!(
        send(anonymous()).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    // A bad token spends no quota: it is refused before the limiter.
    assert_eq!(
        send(bearer("/whoever", "x.y.z")).await.status(),
        StatusCode::UNAUTHORIZED
    );
}
