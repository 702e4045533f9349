//! Conditional-request benchmarks, each beside its baseline in the same run:
//! - `etag/*`: a `GET` of a 1 KiB and a 64 KiB body through an in-process axum stack, bare and
//!   with the layer (buffer, digest, ETag, learn the validators), beside the bare SHA-256 digest
//!   of the same bytes (`EntityTag::digest`);
//! - `revalidate/*`: a full 200 of a 16 KiB body against a 304 for a matching `If-None-Match`,
//!   through the handler, and the fast path that answers from the known validators without it.
//!
//! Run: `cargo bench --bench conditional`.

use std::hint::black_box;
use std::time::Duration;

use api_policy::backend::MemoryBackend;
use api_policy::conditional::{ConditionalLayer, EntityTag, MemoryValidatorStore, ResourceRule};
use axum::Router;
use axum::body::Body;
use axum::routing::get;
use criterion::{Criterion, criterion_group, criterion_main};
use http::Request;
use http_body_util::BodyExt;
use tower::ServiceExt;

fn router(size: usize) -> Router {
    let body = "x".repeat(size);
    Router::new()
        .route("/r/{id}", get(move || std::future::ready(body.clone())))
        .route(
            "/fast/{id}",
            get(move || std::future::ready("y".repeat(16 * 1024))),
        )
}

fn layered(size: usize) -> Router {
    let layer = ConditionalLayer::builder(MemoryValidatorStore::new(&MemoryBackend::new()))
        .resource("/r/{id}", ResourceRule::resource())
        .resource("/fast/{id}", ResourceRule::resource().fast_not_modified())
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    router(size).layer(layer)
}

fn get_req(path: &str, if_none_match: Option<&str>) -> Request<Body> {
    let mut request = Request::get(path);
    if let Some(tag) = if_none_match {
        request = request.header("if-none-match", tag);
    }
    request.body(Body::empty()).unwrap_or_default()
}

/// Sends and reads the whole body, as a client would.
async fn fetch(app: &Router, request: Request<Body>) -> usize {
    match app.clone().oneshot(request).await {
        Ok(response) => response
            .into_body()
            .collect()
            .await
            .map_or(0, |b| b.to_bytes().len()),
        Err(never) => match never {},
    }
}

fn etag(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let mut group = c.benchmark_group("etag");
    for kib in [1usize, 64] {
        let size = kib * 1024;
        let bytes = vec![b'x'; size];
        group.bench_function(format!("digest_{kib}KiB"), |b| {
            b.iter(|| black_box(EntityTag::digest(black_box(&bytes))))
        });
        let bare = router(size);
        group.bench_function(format!("bare_{kib}KiB"), |b| {
            b.to_async(&rt)
                .iter(|| async { black_box(fetch(&bare, get_req("/r/1", None)).await) })
        });
        let with = layered(size);
        group.bench_function(format!("layer_{kib}KiB"), |b| {
            b.to_async(&rt)
                .iter(|| async { black_box(fetch(&with, get_req("/r/1", None)).await) })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("revalidate");
    let app = layered(16 * 1024);
    let tag = rt.block_on(async {
        let response = app.clone().oneshot(get_req("/r/1", None)).await;
        response
            .ok()
            .and_then(|r| {
                r.headers()
                    .get("etag")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
            })
            .unwrap_or_default()
    });
    group.bench_function("full_200_16KiB", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(fetch(&app, get_req("/r/1", None)).await) })
    });
    group.bench_function("not_modified_304", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(fetch(&app, get_req("/r/1", Some(&tag))).await) })
    });
    let fast_tag = rt.block_on(async {
        let response = app.clone().oneshot(get_req("/fast/1", None)).await;
        response
            .ok()
            .and_then(|r| {
                r.headers()
                    .get("etag")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
            })
            .unwrap_or_default()
    });
    group.bench_function("fast_304_no_handler", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(fetch(&app, get_req("/fast/1", Some(&fast_tag))).await) })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = etag
}
criterion_main!(benches);
