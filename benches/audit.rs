//! Audit benchmarks, each beside its baseline in the same run:
//! - `file_sink/*`: records per second into the hash-chained file with fsync, one writer at a
//!   time (one fsync per record) against 64 concurrent writers (group commit);
//! - `layer/*`: an in-process axum `GET` of a PHI route, bare, and through the layer in
//!   buffered and in fail-closed mode (the answer waits for its fsync).
//! - `checkpoints/*` (feature `audit-signing`): what signed checkpoints add per record on the
//!   request path, each beside the same configuration without them: 64 concurrent fail-closed
//!   writers into the file sink, and the buffered layer, sealing every 1,000 and every 100
//!   records.
//!
//! Run: `cargo bench --bench audit`. The log goes to a temporary directory; fsync costs what
//! that disk costs.

use std::hint::black_box;
use std::time::{Duration, Instant};

use api_policy::audit::{AuditLayer, AuditRecord, AuditSink, Durability, FileSink};
use axum::Router;
use axum::body::Body;
use axum::routing::get;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use http::Request;
use tower::ServiceExt;

fn record(n: u64) -> AuditRecord {
    serde_json::from_value(serde_json::json!({
        "time": AuditRecord::timestamp(1_795_521_600_000_000 + n),
        "request_id": format!("req-{n}"), "actor": "dr_1", "actor_kind": "user", "session": null,
        "action": "GET /patients/{id}", "resource": "/patients/pat_1", "subject": "pat_1",
        "status": 200, "refused_by": null, "source_ip": "192.0.2.1", "user_agent": "bench",
        "latency_us": n,
    }))
    .unwrap_or_else(|e| panic!("{e}"))
}

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("api-policy-bench-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir.join("audit.log")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
}

fn file_sink(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("file_sink");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(5));
    for writers in [1u64, 64] {
        let sink = rt.block_on(async {
            FileSink::builder(scratch(&format!("sink{writers}")))
                .open()
                .unwrap_or_else(|e| panic!("{e}"))
        });
        group.throughput(Throughput::Elements(writers * 50));
        group.bench_function(format!("{writers}_writers_x50"), |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let sink = sink.clone();
                async move { write_burst(&sink, writers, iters).await }
            })
        });
        let stats = sink.stats();
        eprintln!(
            "file_sink/{writers}: {} records in {} fsyncs ({:.1} per fsync)",
            stats.records,
            stats.commits,
            stats.records as f64 / stats.commits.max(1) as f64
        );
    }
    group.finish();
}

fn router() -> Router {
    Router::new().route("/patients/{id}", get(|| async { "record" }))
}

fn layered<Si: AuditSink>(layer: AuditLayer<Si>) -> Router {
    router().layer(layer)
}

/// A buffered audit layer over `sink` for the bench's PHI route (inside a runtime: it starts its
/// writer).
fn buffered_layer(sink: FileSink) -> AuditLayer<FileSink> {
    AuditLayer::builder(sink)
        .phi_route_with_subject("/patients/{id}", "id")
        .durability(Durability::Buffered {
            capacity: 65_536,
            drop_when_full: false,
        })
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
}

fn request() -> Request<Body> {
    Request::get("/patients/pat_1")
        .header("user-agent", "bench")
        .body(Body::empty())
        .unwrap_or_default()
}

fn layer(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("layer");
    let bare = router();
    group.bench_function("bare_axum", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(bare.clone().oneshot(request()).await) })
    });
    let buffered = rt.block_on(async {
        let sink = FileSink::builder(scratch("buffered"))
            .open()
            .unwrap_or_else(|e| panic!("{e}"));
        buffered_layer(sink)
    });
    let app = layered(buffered);
    group.bench_function("buffered", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(app.clone().oneshot(request()).await) })
    });
    let closed = rt.block_on(async {
        let sink = FileSink::builder(scratch("closed"))
            .open()
            .unwrap_or_else(|e| panic!("{e}"));
        AuditLayer::builder(sink)
            .phi_route_with_subject("/patients/{id}", "id")
            .build()
            .unwrap_or_else(|e| panic!("{e}"))
    });
    let app = layered(closed);
    group.sample_size(20);
    group.bench_function("fail_closed_fsync", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(app.clone().oneshot(request()).await) })
    });
    group.finish();
}

/// `writers` concurrent writers of 50 records each into `sink`, `iters` times; how long it took.
async fn write_burst(sink: &FileSink, writers: u64, iters: u64) -> Duration {
    let start = Instant::now();
    for _ in 0..iters {
        let tasks: Vec<_> = (0..writers)
            .map(|w| {
                let sink = sink.clone();
                tokio::spawn(async move {
                    for n in 0..50 {
                        let _ = sink.write(record(w * 1000 + n)).await;
                    }
                })
            })
            .collect();
        for task in tasks {
            let _ = task.await;
        }
    }
    start.elapsed()
}

#[cfg(feature = "audit-signing")]
fn checkpoints(c: &mut Criterion) {
    use api_policy::audit::{Checkpoints, SigningKey};
    let rt = runtime();
    let key = SigningKey::generate().unwrap_or_else(|e| panic!("{e}"));
    let open = |name: &str, every: Option<u64>| {
        let mut builder = FileSink::builder(scratch(name));
        if let Some(every) = every {
            builder = builder.checkpoints(Checkpoints::new(key.clone()).every_records(every));
        }
        rt.block_on(async { builder.open().unwrap_or_else(|e| panic!("{e}")) })
    };
    let mut group = c.benchmark_group("checkpoints");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Elements(64 * 50));
    for (name, every) in [
        ("unsealed", None),
        ("every_1000", Some(1_000)),
        ("every_100", Some(100)),
    ] {
        let sink = open(&format!("ckpt-sink-{name}"), every);
        group.bench_function(format!("file_sink_64_writers_x50/{name}"), |b| {
            let sink = sink.clone();
            b.to_async(&rt).iter_custom(move |iters| {
                let sink = sink.clone();
                async move { write_burst(&sink, 64, iters).await }
            })
        });
        eprintln!("checkpoints/file_sink/{name}: {:?}", sink.stats());
    }
    group.throughput(Throughput::Elements(1));
    group.sample_size(30);
    for (name, every) in [
        ("unsealed", None),
        ("every_1000", Some(1_000)),
        ("every_100", Some(100)),
    ] {
        let sink = open(&format!("ckpt-layer-{name}"), every);
        let layer = rt.block_on(async { buffered_layer(sink.clone()) });
        let app = layered(layer);
        group.bench_function(format!("buffered_layer/{name}"), |b| {
            b.to_async(&rt)
                .iter(|| async { black_box(app.clone().oneshot(request()).await) })
        });
        eprintln!("checkpoints/buffered_layer/{name}: {:?}", sink.stats());
    }
    group.finish();
}

#[cfg(not(feature = "audit-signing"))]
fn checkpoints(_: &mut Criterion) {
    eprintln!("checkpoints/*: skipped (needs --features audit-signing)");
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = file_sink, layer, checkpoints
}
criterion_main!(benches);
