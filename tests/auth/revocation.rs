//! Revocation (in memory and shared through Redis) and the verified-token cache.

use std::time::Duration;

use api_policy::auth::{MemoryRevocationStore, RedisRevocationStore};
use api_policy::backend::{MemoryBackend, RedisBackend};
use api_policy::clock::ManualClock;
use api_policy::{FailurePolicy, StoreError};
use http::StatusCode;
use serde_json::json;

use crate::app::{bearer, header, invalid_token, refusal, send, stack};
use crate::common;
use crate::tokens::{FAR, NOW, claims, hs_builder, hs256};

#[tokio::test]
async fn revoked_tokens_are_refused_even_when_cached() {
    let layer = hs_builder()
        .revocation(MemoryRevocationStore::new(&MemoryBackend::new()))
        .build()
        .unwrap();
    let app = stack(&layer);
    let token = hs256(&claims("u", json!({"jti": "t-1"})));
    assert_eq!(
        send(&app, bearer("/me", &token)).await.status(),
        StatusCode::OK
    );
    assert_eq!(layer.cached_tokens(), 1);
    layer.revoke("t-1", FAR).await.unwrap();
    assert_eq!(
        refusal(send(&app, bearer("/me", &token)).await).await.2,
        invalid_token("The token has been revoked.")
    );
    assert_eq!(layer.cached_tokens(), 0, "a revoked token leaves the cache");
    let other = hs256(&claims("u", json!({"jti": "t-2"})));
    assert_eq!(
        send(&app, bearer("/me", &other)).await.status(),
        StatusCode::OK
    );

    let without_store = hs_builder().build().unwrap();
    assert!(matches!(
        without_store.revoke("t-1", FAR).await,
        Err(StoreError::Invalid(_))
    ));
}

#[tokio::test]
async fn redis_revocation_is_shared_between_instances_and_expires_with_the_token() {
    let Some(url) = common::redis_or_skip("redis_revocation").await else {
        return;
    };
    let backend = |prefix: &str| {
        RedisBackend::builder(url.clone())
            .prefix(prefix)
            .build()
            .unwrap()
    };
    let prefix = common::unique_prefix("revocation");
    let one = hs_builder()
        .revocation(RedisRevocationStore::new(&backend(&prefix)))
        .build()
        .unwrap();
    let two = hs_builder()
        .revocation(RedisRevocationStore::new(&backend(&prefix)))
        .build()
        .unwrap();
    let token = hs256(&claims("u", json!({"jti": "shared-1"})));
    assert_eq!(
        send(&stack(&two), bearer("/me", &token)).await.status(),
        StatusCode::OK
    );
    one.revoke("shared-1", FAR).await.unwrap();
    assert_eq!(
        refusal(send(&stack(&two), bearer("/me", &token)).await)
            .await
            .2,
        invalid_token("The token has been revoked.")
    );
    let mut redis = common::raw_connection(&url).await;
    let expires: u64 = redis::cmd("EXPIRETIME")
        .arg(format!("{prefix}jti:shared-1"))
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(
        expires, FAR,
        "the entry lives exactly until the token's exp"
    );
}

#[tokio::test]
async fn an_unreachable_revocation_store_fails_closed_unless_told_otherwise() {
    let port = common::free_port();
    let dead = RedisBackend::builder(format!("redis://127.0.0.1:{port}"))
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let token = hs256(&claims("u", json!({"jti": "t-9"})));
    let closed = stack(
        &hs_builder()
            .revocation(RedisRevocationStore::new(&dead))
            .build()
            .unwrap(),
    );
    let response = send(&closed, bearer("/me", &token)).await;
    assert_eq!(header(&response, "retry-after"), "1");
    assert_eq!(
        refusal(response).await,
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "auth_unavailable".into(),
            "<missing>".into()
        )
    );
    let open = stack(
        &hs_builder()
            .revocation(RedisRevocationStore::new(&dead))
            .on_revocation_error(FailurePolicy::Open)
            .build()
            .unwrap(),
    );
    assert_eq!(
        send(&open, bearer("/me", &token)).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn cached_tokens_are_bounded_and_never_outlive_exp() {
    let clock = ManualClock::at_secs(NOW);
    let layer = hs_builder()
        .clock(clock.clone())
        .cache_verified(64)
        .build()
        .unwrap();
    let app = stack(&layer);
    for i in 0..200 {
        let token = hs256(&claims(&format!("u{i}"), json!({"exp": NOW + 100 + i})));
        assert_eq!(
            send(&app, bearer("/me", &token)).await.status(),
            StatusCode::OK
        );
    }
    assert!(layer.cached_tokens() <= 64, "{}", layer.cached_tokens());
    let token = hs256(&claims("late", json!({"exp": NOW + 10})));
    assert_eq!(
        send(&app, bearer("/me", &token)).await.status(),
        StatusCode::OK
    );
    clock.advance(Duration::from_secs(10));
    assert_eq!(
        refusal(send(&app, bearer("/me", &token)).await).await.1,
        "invalid_token"
    );
}
