//! The whole stack against a bare handler, in one run: an in-process axum `GET` carrying an
//! HS256 token, bare, and through audit (buffered) -> JWT auth -> rate limit (with headers) ->
//! versioning -> idempotency -> conditional requests, every store in memory. Also each layer
//! alone on the same request, to see where the time goes.
//!
//! Every request is a 200: a rate limit without the JWT layer identifies the caller by its API
//! key. Over HTTP, with the server on one core and the load on the other, see
//! `scripts/loadtest.sh`.
//!
//! Run: `cargo bench --bench stack --features jwt`.

use std::collections::HashMap;
use std::hint::black_box;
use std::time::Duration;

use api_policy::audit::{AuditLayer, Durability, FileSink};
use api_policy::auth::{Algorithm, JwtAuthLayer, VerifyKey};
use api_policy::backend::MemoryBackend;
use api_policy::conditional::{ConditionalLayer, MemoryValidatorStore, ResourceRule};
use api_policy::idempotency::{IdempotencyLayer, MemoryIdempotencyStore};
use api_policy::principal::{KeyExtractor, Principal};
use api_policy::rate_limit::{MemoryRateLimitStore, Quota, RateLimitLayer};
use api_policy::stack::PolicyStack;
use api_policy::versioning::{ApiVersion, MemoryVersionPinStore, VersionStatus, VersioningLayer};
use axum::Router;
use axum::body::Body;
use axum::routing::get;
use criterion::{Criterion, criterion_group, criterion_main};
use http::Request;
use tower::ServiceExt;

const SECRET: &[u8] = b"a-bench-secret-that-is-at-least-32-bytes";

fn token() -> String {
    let claims = serde_json::json!({
        "sub": "dr_bench", "role": "doctor", "iss": "bench", "aud": "api",
        "exp": 4_000_000_000u64, "iat": 1_700_000_000u64,
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET),
    )
    .unwrap_or_default()
}

fn router() -> Router {
    Router::new().route(
        "/api/v2/patients/{id}",
        get(|| async { r#"{"id":"pat_1","name":"Ada"}"# }),
    )
}

fn request(token: &str) -> Request<Body> {
    Request::get("/api/v2/patients/pat_1")
        .header("authorization", format!("Bearer {token}"))
        // Identifies the caller to a rate limit that runs without the JWT layer.
        .header("x-api-key", "k_bench")
        .body(Body::empty())
        .unwrap_or_default()
}

fn or_panic<T, E: std::fmt::Display>(result: Result<T, E>) -> T {
    result.unwrap_or_else(|e| panic!("{e}"))
}

fn stack(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let memory = MemoryBackend::new();
    let auth = || {
        or_panic(
            JwtAuthLayer::builder()
                .key(or_panic(VerifyKey::hmac(Algorithm::HS256, SECRET)))
                .issuer(["bench"])
                .audience(["api"])
                .build(),
        )
    };
    let limits = || {
        or_panic(
            RateLimitLayer::builder(MemoryRateLimitStore::new(&memory))
                .tier(
                    "default",
                    Quota::per_second(1_000_000).with_burst(1_000_000_000),
                )
                .ietf_headers(true)
                .key_extractor(or_panic(KeyExtractor::new().api_key_header(
                    "x-api-key",
                    HashMap::from([("k_bench".to_string(), Principal::service("bench"))]),
                )))
                .build(),
        )
    };
    let versioning = || {
        or_panic(
            VersioningLayer::builder(MemoryVersionPinStore::new(&memory), ApiVersion::Major(2))
                .version(ApiVersion::Major(2), VersionStatus::Current)
                .path_prefix()
                .header("Api-Version")
                .build(),
        )
    };
    let idempotency =
        || or_panic(IdempotencyLayer::builder(MemoryIdempotencyStore::new(&memory)).build());
    let conditional = || {
        or_panic(
            ConditionalLayer::builder(MemoryValidatorStore::new(&memory))
                .resource(
                    "/api/v2/patients/{id}",
                    ResourceRule::resource().cache_control("private, max-age=300"),
                )
                .build(),
        )
    };
    let dir = std::env::temp_dir().join(format!("api-policy-bench-stack-{}", std::process::id()));
    let audit = rt.block_on(async {
        or_panic(
            AuditLayer::builder(or_panic(FileSink::builder(dir.join("audit.log")).open()))
                .phi_route_with_subject("/api/v2/patients/{id}", "id")
                .durability(Durability::Buffered {
                    capacity: 65_536,
                    drop_when_full: false,
                })
                .build(),
        )
    });
    let token = token();
    let mut group = c.benchmark_group("stack");
    let mut run = |name: &str, app: Router| {
        let status = rt.block_on(async {
            app.clone()
                .oneshot(request(&token))
                .await
                .map(|r| r.status())
        });
        assert_eq!(
            status.ok(),
            Some(http::StatusCode::OK),
            "{name} must answer 200"
        );
        group.bench_function(name, |b| {
            b.to_async(&rt)
                .iter(|| async { black_box(app.clone().oneshot(request(&token)).await) })
        });
    };
    run("bare_axum", router());
    run("jwt_hs256_only", router().layer(auth()));
    run("rate_limit_only", router().layer(limits()));
    run("versioning_only", router().layer(versioning()));
    run("idempotency_only", router().layer(idempotency()));
    run("conditional_only", router().layer(conditional()));
    run("audit_buffered_only", router().layer(audit.clone()));
    run(
        "full_stack",
        router().layer(
            PolicyStack::new()
                .audit(audit)
                .auth(auth())
                .rate_limit(limits())
                .versioning(versioning())
                .idempotency(idempotency())
                .conditional(conditional()),
        ),
    );
    group.finish();
    let _ = std::fs::remove_dir_all(dir);
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = stack
}
criterion_main!(benches);
