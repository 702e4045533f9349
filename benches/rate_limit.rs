//! Rate-limit benchmarks, each beside its baseline measured in the same run:
//! - `decision/*`: one memory decision on one hot key and across 10,000 keys, against governor's
//!   keyed limiter (DashMap + atomics);
//! - `redis/*`: one Redis decision, and 64 concurrent callers, against raw EVALSHA of the same script;
//! - `layer/*`: an in-process axum stack bare, with this layer, and with tower_governor
//!   (`use_headers()`), all keyed by an API key header.
//!
//! Run: `cargo bench --bench rate_limit --all-features` (the Redis group needs `REDIS_URL` or a
//! local Redis; without one it is skipped with a message).

use std::collections::HashMap;
use std::hint::black_box;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use api_policy::backend::MemoryBackend;
use api_policy::principal::{KeyExtractor, Principal};
use api_policy::rate_limit::{
    BucketKey, MemoryRateLimitStore, Quota, RateLimitLayer, RateLimitStore,
};
use axum::Router;
use axum::body::Body;
use axum::routing::get;
use criterion::{Criterion, criterion_group, criterion_main};
use http::Request;
use tower::{Layer, ServiceExt};

const KEYS: usize = 10_000;

/// 100 per second with a burst no benchmark exhausts: every decision is an admission that leaves
/// the bucket owing time, as a limiter under real load does. (A quota so generous that a bucket is
/// full again between two visits would measure the memory store forgetting and re-creating idle
/// buckets, which governor's limiter never does by itself.)
fn big_quota() -> Quota {
    Quota::per_second(100).with_burst(1_000_000_000)
}

fn governor_quota() -> governor::Quota {
    let per_second = NonZeroU32::new(100).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(1_000_000_000).unwrap_or(NonZeroU32::MIN);
    governor::Quota::per_second(per_second).allow_burst(burst)
}

fn decisions(c: &mut Criterion) {
    let callers: Vec<String> = (0..KEYS).map(|i| format!("p:user{i}")).collect();
    let mut group = c.benchmark_group("decision");

    let governor = governor::RateLimiter::keyed(governor_quota());
    group.bench_function("governor_keyed/hot_key", |b| {
        b.iter(|| black_box(governor.check_key(&callers[0]).is_ok()))
    });
    let mut i = 0;
    group.bench_function("governor_keyed/10k_keys", |b| {
        b.iter(|| {
            i = (i + 1) % KEYS;
            black_box(governor.check_key(&callers[i]).is_ok())
        })
    });

    let store = MemoryRateLimitStore::new(&MemoryBackend::new());
    let quota = big_quota();
    let key = |caller| BucketKey {
        caller,
        bucket: "default",
        overridable: true,
    };
    group.bench_function("api_policy_memory/hot_key", |b| {
        b.iter(|| black_box(store.decide_now(key(&callers[0]), &quota, 1).allowed))
    });
    group.bench_function("api_policy_memory/10k_keys", |b| {
        b.iter(|| {
            i = (i + 1) % KEYS;
            black_box(store.decide_now(key(&callers[i]), &quota, 1).allowed)
        })
    });
    group.finish();
}

fn router() -> Router {
    Router::new().route("/items", get(|| async { "items" }))
}

fn request() -> Request<Body> {
    Request::get("/items")
        .header("x-api-key", "bench-key")
        .body(Body::empty())
        .unwrap_or_default()
}

/// tower_governor keyed by the same API key header.
#[derive(Clone)]
struct ApiKeyHeader;

impl tower_governor::key_extractor::KeyExtractor for ApiKeyHeader {
    type Key = String;

    fn extract<T>(&self, req: &Request<T>) -> Result<String, tower_governor::GovernorError> {
        req.headers()
            .get("x-api-key")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .ok_or(tower_governor::GovernorError::UnableToExtractKey)
    }
}

fn layer(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let mut group = c.benchmark_group("layer");

    let bare = router();
    group.bench_function("bare_axum", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(bare.clone().oneshot(request()).await) })
    });

    let keys = HashMap::from([(
        "bench-key".to_string(),
        Principal::service("bench").with_tier("pro"),
    )]);
    let ours = RateLimitLayer::builder(MemoryRateLimitStore::new(&MemoryBackend::new()))
        .tier("pro", big_quota())
        .key_extractor(
            KeyExtractor::new()
                .api_key_header("x-api-key", keys)
                .unwrap_or_else(|e| panic!("{e}")),
        )
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
        .layer(router());
    group.bench_function("api_policy_headers", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(ours.clone().oneshot(request()).await) })
    });

    let config = tower_governor::governor::GovernorConfigBuilder::default()
        .per_millisecond(10)
        .burst_size(1_000_000_000)
        .key_extractor(ApiKeyHeader)
        .use_headers()
        .finish()
        .unwrap_or_else(|| panic!("governor config"));
    let governed = router().layer(tower_governor::GovernorLayer::new(config));
    group.bench_function("tower_governor_use_headers", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(governed.clone().oneshot(request()).await) })
    });
    group.finish();
}

fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_string())
}

fn redis(c: &mut Criterion) {
    use api_policy::backend::RedisBackend;
    use api_policy::rate_limit::RedisRateLimitStore;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let url = redis_url();
    let Ok(client) = redis::Client::open(url.as_str()) else {
        return;
    };
    let raw = rt.block_on(async { client.get_connection_manager().await });
    let Ok(raw) = raw else {
        eprintln!("!!! SKIPPED redis benches: no Redis at {url} !!!");
        return;
    };
    let backend = rt
        .block_on(async { RedisBackend::builder(url.clone()).prefix("bench:").build() })
        .unwrap_or_else(|e| panic!("{e}"));
    let store = RedisRateLimitStore::new(&backend);
    let script = Arc::new(redis::Script::new(concat!(
        include_str!("../src/backend/now.lua"),
        include_str!("../src/rate_limit/decide.lua")
    )));

    let ours_once = |store: RedisRateLimitStore, i: usize| async move {
        let caller = format!("p:user{}", i % KEYS);
        let key = BucketKey {
            caller: &caller,
            bucket: "default",
            overridable: true,
        };
        black_box(
            store
                .decide(key, &big_quota(), 1)
                .await
                .map(|d| d.allowed)
                .unwrap_or(false),
        )
    };
    let raw_once = |mut conn: redis::aio::ConnectionManager,
                    script: Arc<redis::Script>,
                    i: usize| async move {
        let quota = big_quota();
        let reply: redis::RedisResult<Vec<i64>> = script
            .key(format!("bench:raw:{{p:user{}}}:default", i % KEYS))
            .key(format!("bench:raw:{{p:user{}}}:override", i % KEYS))
            .arg(0)
            .arg(quota.count())
            .arg(quota.period_micros())
            .arg(quota.burst())
            .arg(1)
            .arg("")
            .invoke_async(&mut conn)
            .await;
        black_box(reply.map(|r| r[0]).unwrap_or(0))
    };

    let mut group = c.benchmark_group("redis");
    let mut i = 0;
    group.bench_function("raw_evalsha/sequential", |b| {
        b.to_async(&rt).iter(|| {
            i += 1;
            raw_once(raw.clone(), script.clone(), i)
        })
    });
    group.bench_function("api_policy_decision/sequential", |b| {
        b.to_async(&rt).iter(|| {
            i += 1;
            ours_once(store.clone(), i)
        })
    });
    const CALLERS: u64 = 64;
    group.bench_function("raw_evalsha/64_concurrent", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let (raw, script) = (raw.clone(), script.clone());
            async move {
                let start = Instant::now();
                let tasks: Vec<_> = (0..CALLERS)
                    .map(|t| {
                        let (raw, script) = (raw.clone(), script.clone());
                        tokio::spawn(async move {
                            for n in 0..iters.div_ceil(CALLERS) {
                                raw_once(raw.clone(), script.clone(), (t * 1000 + n) as usize)
                                    .await;
                            }
                        })
                    })
                    .collect();
                for task in tasks {
                    let _ = task.await;
                }
                start.elapsed()
            }
        })
    });
    group.bench_function("api_policy_decision/64_concurrent", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let store = store.clone();
            async move {
                let start = Instant::now();
                let tasks: Vec<_> = (0..CALLERS)
                    .map(|t| {
                        let store = store.clone();
                        tokio::spawn(async move {
                            for n in 0..iters.div_ceil(CALLERS) {
                                ours_once(store.clone(), (t * 1000 + n) as usize).await;
                            }
                        })
                    })
                    .collect();
                for task in tasks {
                    let _ = task.await;
                }
                start.elapsed()
            }
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = decisions, layer, redis
}
criterion_main!(benches);
