//! Idempotency and webhook benchmarks, each beside the bare stack measured in the same run:
//! - `idempotency/*`: an in-process axum `POST` (a 120-byte JSON body, a 200-byte JSON answer)
//!   bare, then through the layer as a first execution (a new key each time: read the body,
//!   fingerprint, lock, run, keep the answer) and as a replay (the same key each time), on the
//!   memory store and, when one answers, on Redis;
//! - `webhook/*`: Stripe signature verification of a 2 KiB payload, and the layer replaying a
//!   delivery (verify, find the event id, replay).
//!
//! Run: `cargo bench --bench idempotency --all-features` (the Redis cases need `REDIS_URL` or a
//! local Redis; without one they are skipped with a message).

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use api_policy::backend::{MemoryBackend, RedisBackend};
use api_policy::idempotency::{
    IdempotencyLayer, IdempotencyStore, MemoryIdempotencyStore, RedisIdempotencyStore,
};
use api_policy::webhook::{WebhookLayer, WebhookSecret, sign_stripe, verify_stripe};
use axum::Router;
use axum::body::Body;
use axum::routing::post;
use criterion::{Criterion, criterion_group, criterion_main};
use http::Request;
use tower::ServiceExt;

const BODY: &str = r#"{"slot_id":"slot_2026_12_02_1000","patient_id":"pat_1","reason":"Annual check-up, fasting bloods"}"#;

fn router() -> Router {
    Router::new().route(
        "/orders",
        post(|body: String| async move {
            (
                http::StatusCode::CREATED,
                [("location", "/orders/apt_6")],
                format!(
                    r#"{{"id":"apt_6","status":"scheduled","received":{},"provider":{{"id":"prv_1","name":"Dr. Ada Okafor"}}}}"#,
                    body.len()
                ),
            )
        }),
    )
}

fn order(key: &str) -> Request<Body> {
    Request::post("/orders")
        .header("content-type", "application/json")
        .header("idempotency-key", key)
        .body(Body::from(BODY))
        .unwrap_or_default()
}

fn layered<St: IdempotencyStore>(store: St) -> Router {
    let layer = IdempotencyLayer::builder(store)
        .require("POST /orders")
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    router().layer(layer)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// First executions (a fresh key each iteration) and replays (one key) through `app`.
fn first_and_replay(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    rt: &tokio::runtime::Runtime,
    name: &str,
    app: &Router,
) {
    static KEY: AtomicU64 = AtomicU64::new(0);
    let run = std::process::id();
    group.bench_function(format!("{name}_first"), |b| {
        b.to_async(rt).iter(|| async {
            let key = format!("k-{run}-{}", KEY.fetch_add(1, Ordering::Relaxed));
            black_box(app.clone().oneshot(order(&key)).await)
        })
    });
    let replayed = format!("replay-{run}-{name}");
    group.bench_function(format!("{name}_replay"), |b| {
        b.to_async(rt)
            .iter(|| async { black_box(app.clone().oneshot(order(&replayed)).await) })
    });
}

fn idempotency(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("idempotency");
    let bare = router();
    group.bench_function("bare_axum", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(bare.clone().oneshot(order("k")).await) })
    });
    let memory = layered(MemoryIdempotencyStore::new(&MemoryBackend::new()));
    first_and_replay(&mut group, &rt, "memory", &memory);

    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_string());
    let answers = rt.block_on(async {
        let client = redis::Client::open(url.as_str()).ok()?;
        let mut connection = client.get_multiplexed_async_connection().await.ok()?;
        redis::cmd("PING")
            .query_async::<String>(&mut connection)
            .await
            .ok()
    });
    if answers.is_none() {
        eprintln!("!!! SKIPPED the Redis idempotency benches: no Redis at {url} !!!");
    } else {
        let backend = rt.block_on(async {
            RedisBackend::builder(url.clone())
                .prefix(format!("bench:{}:", std::process::id()))
                .build()
                .unwrap_or_else(|e| panic!("{e}"))
        });
        let redis = layered(RedisIdempotencyStore::new(&backend));
        first_and_replay(&mut group, &rt, "redis", &redis);
    }
    group.finish();
}

fn webhook(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("webhook");
    let secret = WebhookSecret::new("whsec_bench_0123456789").unwrap_or_else(|e| panic!("{e}"));
    let payload = format!(
        r#"{{"id":"evt_bench","type":"payment_intent.succeeded","pad":"{}"}}"#,
        "x".repeat(2000)
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let header = sign_stripe(payload.as_bytes(), &secret, now);
    let secrets = [secret];
    group.bench_function("verify_stripe_2k", |b| {
        b.iter(|| {
            black_box(verify_stripe(
                Some(header.as_bytes()),
                payload.as_bytes(),
                &secrets,
                now,
                300,
            ))
        })
    });
    let delivery = || {
        Request::post("/hook")
            .header("stripe-signature", header.as_str())
            .body(Body::from(payload.clone()))
            .unwrap_or_default()
    };
    let bare = Router::new().route("/hook", post(|| async { "ok" }));
    group.bench_function("bare_axum", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(bare.clone().oneshot(delivery()).await) })
    });
    let layer = WebhookLayer::stripe(
        MemoryIdempotencyStore::new(&MemoryBackend::new()),
        "whsec_bench_0123456789",
    )
    .build()
    .unwrap_or_else(|e| panic!("{e}"));
    let hooked = Router::new()
        .route("/hook", post(|| async { "ok" }))
        .layer(layer);
    group.bench_function("stripe_replay", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(hooked.clone().oneshot(delivery()).await) })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = idempotency, webhook
}
criterion_main!(benches);
