//! Versioning benchmarks beside the bare stack in the same run: an in-process axum `GET`
//! bare, through the layer on a current version (resolved from the path, echoed, `Vary`), with
//! a version header, and on a deprecated version (its headers, and the call counted in the
//! memory store).
//!
//! Run: `cargo bench --bench versioning`.

use std::hint::black_box;
use std::time::{Duration, UNIX_EPOCH};

use api_policy::backend::MemoryBackend;
use api_policy::versioning::{
    ApiVersion, Deprecation, MemoryVersionPinStore, VersionStatus, VersioningLayer,
};
use axum::Router;
use axum::body::Body;
use axum::routing::get;
use criterion::{Criterion, criterion_group, criterion_main};
use http::Request;
use tower::ServiceExt;

fn router() -> Router {
    Router::new()
        .route("/api/v1/items/{id}", get(|| async { "item" }))
        .route("/api/v2/items/{id}", get(|| async { "item" }))
}

fn request(uri: &str, header: Option<&str>) -> Request<Body> {
    let mut request = Request::get(uri);
    if let Some(version) = header {
        request = request.header("api-version", version);
    }
    request.body(Body::empty()).unwrap_or_default()
}

fn versioning(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let deprecation = Deprecation::since(UNIX_EPOCH + Duration::from_secs(1_782_864_000))
        .sunset(UNIX_EPOCH + Duration::from_secs(1_798_761_599))
        .link("https://docs.example.com/migrate");
    let layer = VersioningLayer::builder(
        MemoryVersionPinStore::new(&MemoryBackend::new()),
        ApiVersion::Major(2),
    )
    .version(ApiVersion::Major(1), VersionStatus::Deprecated(deprecation))
    .version(ApiVersion::Major(2), VersionStatus::Current)
    .path_prefix()
    .header("Api-Version")
    .build()
    .unwrap_or_else(|e| panic!("{e}"));
    let bare = router();
    let with = router().layer(layer);

    let mut group = c.benchmark_group("versioning");
    group.bench_function("bare_axum", |b| {
        b.to_async(&rt).iter(|| async {
            black_box(bare.clone().oneshot(request("/api/v2/items/1", None)).await)
        })
    });
    group.bench_function("current_by_path", |b| {
        b.to_async(&rt).iter(|| async {
            black_box(with.clone().oneshot(request("/api/v2/items/1", None)).await)
        })
    });
    group.bench_function("current_by_header", |b| {
        b.to_async(&rt).iter(|| async {
            black_box(
                with.clone()
                    .oneshot(request("/api/v2/items/1", Some("v2")))
                    .await,
            )
        })
    });
    group.bench_function("deprecated_counted", |b| {
        b.to_async(&rt).iter(|| async {
            black_box(with.clone().oneshot(request("/api/v1/items/1", None)).await)
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = versioning
}
criterion_main!(benches);
