//! The idempotency layer over real axum stacks, on the memory store and on a real Redis.
//! Each scenario runs on both backends (SEMANTICS.md, idempotency items 1 to 12).

#[macro_use]
mod common;

use common::Answer;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use api_policy::Principal;
use api_policy::backend::{MemoryBackend, RedisBackend};
use api_policy::clock::ManualClock;
use api_policy::idempotency::{
    Begin, Fingerprint, IdempotencyBuilder, IdempotencyKey, IdempotencyLayer, IdempotencyStore,
    MemoryIdempotencyStore, NotExecuted, RecordKey, RedisIdempotencyStore, Terms,
};
use api_policy::rate_limit::{MemoryRateLimitStore, Quota, RateLimitLayer};
use axum::body::Body;
use axum::extract::{Extension, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use http::StatusCode;
use tokio::sync::Notify;

const T0: u64 = 1_800_000_000_000_000;

/// What the handlers count and how they can be held.
#[derive(Clone, Default)]
struct Handlers {
    runs: Arc<AtomicU32>,
    /// The slow handler waits on this after announcing it started.
    entered: Arc<Notify>,
    gate: Arc<Notify>,
    delay: Duration,
}

async fn create(
    State(h): State<Handlers>,
    key: Option<Extension<IdempotencyKey>>,
    body: String,
) -> Response {
    let n = h.runs.fetch_add(1, Ordering::SeqCst) + 1;
    let (key, attempt) = key.map_or((String::new(), 0), |Extension(k)| {
        (k.key.to_string(), k.attempt)
    });
    if !h.delay.is_zero() {
        tokio::time::sleep(h.delay).await;
    }
    let json = serde_json::json!({"order": n, "key": key, "attempt": attempt, "body": body});
    (
        StatusCode::CREATED,
        [
            ("location", format!("/orders/{n}")),
            ("x-run", n.to_string()),
        ],
        Json(json),
    )
        .into_response()
}

async fn slow(State(h): State<Handlers>, Extension(key): Extension<IdempotencyKey>) -> Response {
    h.runs.fetch_add(1, Ordering::SeqCst);
    h.entered.notify_one();
    h.gate.notified().await;
    (StatusCode::CREATED, format!("attempt {}", key.attempt)).into_response()
}

async fn fail(State(h): State<Handlers>) -> Response {
    let n = h.runs.fetch_add(1, Ordering::SeqCst) + 1;
    (StatusCode::INTERNAL_SERVER_ERROR, format!("failure {n}")).into_response()
}

async fn conflict(State(h): State<Handlers>) -> Response {
    let n = h.runs.fetch_add(1, Ordering::SeqCst) + 1;
    (StatusCode::CONFLICT, format!("seat taken {n}")).into_response()
}

/// A validation failure: the handler says it changed nothing.
async fn validate(State(h): State<Handlers>, body: String) -> Response {
    h.runs.fetch_add(1, Ordering::SeqCst);
    if body.contains("bad") {
        let mut response = (StatusCode::BAD_REQUEST, "invalid").into_response();
        response.extensions_mut().insert(NotExecuted);
        return response;
    }
    (StatusCode::CREATED, "valid").into_response()
}

async fn big(State(h): State<Handlers>) -> Response {
    h.runs.fetch_add(1, Ordering::SeqCst);
    "x".repeat(4096).into_response()
}

async fn count(State(h): State<Handlers>) -> String {
    (h.runs.fetch_add(1, Ordering::SeqCst) + 1).to_string()
}

/// The caller from `x-user`, standing in for an auth layer.
async fn who(mut request: Request) -> Request {
    let user = request
        .headers()
        .get("x-user")
        .and_then(|v| v.to_str().ok())
        .map(Principal::user);
    if let Some(user) = user {
        request.extensions_mut().insert(user);
    }
    request
}

fn app<St: IdempotencyStore>(layer: IdempotencyLayer<St>, handlers: Handlers) -> Router {
    Router::new()
        .route("/orders", post(create).get(count).put(count).delete(count))
        .route("/orders/{id}", post(create).patch(create))
        .route("/slow", post(slow))
        .route("/fail", post(fail))
        .route("/conflict", post(conflict))
        .route("/validate", post(validate))
        .route("/big", post(big))
        .with_state(handlers)
        .layer(layer)
        .layer(axum::middleware::map_request(who))
}

fn configure<St: IdempotencyStore>(store: St) -> IdempotencyBuilder<St> {
    IdempotencyLayer::builder(store)
        .require("POST /orders")
        .max_request_bytes(1024)
        .max_response_bytes(1024)
}

fn post_with(path: &str, key: Option<&str>, user: &str, body: &str) -> Request<Body> {
    let mut request = Request::post(path).header("x-user", user);
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    request.body(Body::from(body.to_string())).unwrap()
}

async fn send(app: &Router, request: Request<Body>) -> Answer {
    common::answer(app, request).await
}

// ---- scenarios -------------------------------------------------------------------------------

/// Items 4 and 12: the handler runs once; the retry gets its status, headers and body.
async fn replays_the_first_answer<St: IdempotencyStore>(store: St, _clock: ManualClock) {
    let h = Handlers::default();
    let app = app(configure(store).build().unwrap(), h.clone());
    let first = send(
        &app,
        post_with("/orders", Some("k-1"), "alice", "{\"slot\":1}"),
    )
    .await;
    assert_eq!(first.status, StatusCode::CREATED);
    assert!(!first.replayed());
    let json: serde_json::Value = serde_json::from_str(&first.body).unwrap();
    assert_eq!(
        (json["key"].as_str(), json["attempt"].as_u64()),
        (Some("k-1"), Some(1))
    );
    for _ in 0..3 {
        let retry = send(
            &app,
            post_with("/orders", Some("k-1"), "alice", "{\"slot\":1}"),
        )
        .await;
        assert_eq!(retry.status, StatusCode::CREATED);
        assert!(retry.replayed());
        assert_eq!(retry.body, first.body);
        for name in ["location", "x-run", "content-type"] {
            assert_eq!(retry.headers.get(name), first.headers.get(name), "{name}");
        }
    }
    assert_eq!(h.runs.load(Ordering::SeqCst), 1);
}

/// Item 3: `"abc"` and `abc` are one key; bad keys are 400.
async fn keys_bare_or_quoted_and_bad_ones<St: IdempotencyStore>(store: St, _clock: ManualClock) {
    let h = Handlers::default();
    let app = app(configure(store).build().unwrap(), h.clone());
    send(&app, post_with("/orders", Some("abc"), "alice", "{}")).await;
    let quoted = send(&app, post_with("/orders", Some("\"abc\""), "alice", "{}")).await;
    assert!(quoted.replayed());
    let max = "k".repeat(255);
    assert_eq!(
        send(&app, post_with("/orders", Some(&max), "alice", "{}"))
            .await
            .status,
        201
    );
    for bad in [
        "k".repeat(256),
        "two words".into(),
        "\"open".into(),
        "\"\"".into(),
    ] {
        let answer = send(&app, post_with("/orders", Some(&bad), "alice", "{}")).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(answer.error(), "idempotency_key_invalid");
        assert_eq!(answer.headers["content-type"], "application/problem+json");
    }
    let twice = Request::post("/orders")
        .header("idempotency-key", "a")
        .header("idempotency-key", "a")
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&app, twice).await.error(), "idempotency_key_invalid");
    assert_eq!(h.runs.load(Ordering::SeqCst), 2);
}

/// Items 1 and 2: POST and PATCH only; a required key missing is 400, an optional one passes.
async fn methods_and_required_routes<St: IdempotencyStore>(store: St, _clock: ManualClock) {
    let h = Handlers::default();
    let app = app(configure(store).build().unwrap(), h.clone());
    for method in ["GET", "PUT", "DELETE"] {
        for expected in 0..2 {
            let request = Request::builder()
                .method(method)
                .uri("/orders")
                .header("idempotency-key", format!("m-{method}"))
                .body(Body::empty())
                .unwrap();
            let answer = send(&app, request).await;
            assert_eq!(answer.status, StatusCode::OK, "{method}");
            assert!(!answer.replayed(), "{method} #{expected}");
        }
    }
    assert_eq!(
        h.runs.load(Ordering::SeqCst),
        6,
        "the header is ignored on GET, PUT, DELETE"
    );
    let patch = || {
        Request::patch("/orders/7")
            .header("idempotency-key", "p-1")
            .header("x-user", "alice")
            .body(Body::from("{}"))
            .unwrap()
    };
    send(&app, patch()).await;
    assert!(send(&app, patch()).await.replayed(), "PATCH is keyed");

    let missing = send(&app, post_with("/orders", None, "alice", "{}")).await;
    assert_eq!(missing.status, StatusCode::BAD_REQUEST);
    assert_eq!(missing.error(), "idempotency_key_missing");
    // Optional elsewhere: without a key, nothing is stored and every request runs.
    let before = h.runs.load(Ordering::SeqCst);
    for _ in 0..2 {
        let answer = send(&app, post_with("/orders/9", None, "alice", "{}")).await;
        assert_eq!(answer.status, StatusCode::CREATED);
        assert!(!answer.replayed());
    }
    assert_eq!(h.runs.load(Ordering::SeqCst), before + 2);
}

/// Item 5: errors are replayed (4xx and 5xx), unless `release_on_5xx`.
async fn errors_are_replayed_unless_released<St: IdempotencyStore>(store: St, _clock: ManualClock) {
    let h = Handlers::default();
    let app1 = app(configure(store.clone()).build().unwrap(), h.clone());
    for path in ["/fail", "/conflict"] {
        let first = send(&app1, post_with(path, Some(path), "alice", "")).await;
        let retry = send(&app1, post_with(path, Some(path), "alice", "")).await;
        assert_eq!(
            (retry.status, &retry.body),
            (first.status, &first.body),
            "{path}"
        );
        assert!(retry.replayed());
    }
    assert_eq!(h.runs.load(Ordering::SeqCst), 2);

    let h = Handlers::default();
    let app2 = app(
        configure(store).release_on_5xx(true).build().unwrap(),
        h.clone(),
    );
    let first = send(&app2, post_with("/fail", Some("again"), "alice", "")).await;
    let retry = send(&app2, post_with("/fail", Some("again"), "alice", "")).await;
    assert_eq!(
        (first.body.as_str(), retry.body.as_str()),
        ("failure 1", "failure 2")
    );
    assert!(!retry.replayed());
    let first = send(&app2, post_with("/conflict", Some("c"), "alice", "")).await;
    assert!(
        send(&app2, post_with("/conflict", Some("c"), "alice", ""))
            .await
            .replayed()
    );
    assert_eq!(first.status, StatusCode::CONFLICT, "4xx still replayed");
}

/// Item 7: the same key with another method, path, query or body is 422.
async fn reused_key_with_another_request_is_422<St: IdempotencyStore>(
    store: St,
    _clock: ManualClock,
) {
    let h = Handlers::default();
    let app = app(configure(store).build().unwrap(), h.clone());
    send(
        &app,
        post_with("/orders", Some("r-1"), "alice", "{\"slot\":1}"),
    )
    .await;
    for (path, body) in [
        ("/orders", "{\"slot\":2}"),
        ("/orders?coupon=1", "{\"slot\":1}"),
        ("/orders/5", "{\"slot\":1}"),
    ] {
        let answer = send(&app, post_with(path, Some("r-1"), "alice", body)).await;
        assert_eq!(
            answer.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{path} {body}"
        );
        assert_eq!(answer.error(), "idempotency_key_reused");
    }
    let patch = Request::patch("/orders/5")
        .header("idempotency-key", "r-1")
        .header("x-user", "alice")
        .body(Body::from("{\"slot\":1}"))
        .unwrap();
    assert_eq!(
        send(&app, patch).await.status,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(h.runs.load(Ordering::SeqCst), 1);
}

/// Item 8: another principal's identical key is an unrelated request.
async fn keys_are_scoped_by_principal<St: IdempotencyStore>(store: St, _clock: ManualClock) {
    let h = Handlers::default();
    let app = app(configure(store).build().unwrap(), h.clone());
    let alice = send(&app, post_with("/orders", Some("same"), "alice", "{}")).await;
    let bob = send(
        &app,
        post_with("/orders", Some("same"), "bob", "{\"other\":1}"),
    )
    .await;
    assert_eq!(
        (alice.status, bob.status),
        (StatusCode::CREATED, StatusCode::CREATED)
    );
    assert!(!bob.replayed());
    assert_ne!(alice.body, bob.body);
    assert!(
        send(
            &app,
            post_with("/orders", Some("same"), "bob", "{\"other\":1}")
        )
        .await
        .replayed()
    );
    assert_eq!(h.runs.load(Ordering::SeqCst), 2);
}

/// Item 6: 100 concurrent identical requests run the handler once; the rest get 409.
async fn concurrent_duplicates_get_409<St: IdempotencyStore>(store: St, _clock: ManualClock) {
    let h = Handlers {
        delay: Duration::from_millis(300),
        ..Handlers::default()
    };
    let app = app(configure(store).build().unwrap(), h.clone());
    let answers = fire(&app, 100, "c-1").await;
    let created = answers
        .iter()
        .filter(|a| a.status == StatusCode::CREATED)
        .count();
    let in_use: Vec<_> = answers
        .iter()
        .filter(|a| a.status == StatusCode::CONFLICT)
        .collect();
    assert_eq!(h.runs.load(Ordering::SeqCst), 1);
    assert_eq!((created, in_use.len()), (1, 99));
    for answer in in_use {
        assert_eq!(answer.error(), "idempotency_key_in_use");
        assert_eq!(answer.headers["retry-after"], "1");
    }
}

/// Item 6, wait mode: duplicates wait for the first and get its replay.
async fn wait_mode_replays_to_duplicates<St: IdempotencyStore>(store: St, _clock: ManualClock) {
    let h = Handlers {
        delay: Duration::from_millis(300),
        ..Handlers::default()
    };
    let layer = configure(store)
        .wait_for_in_flight(Duration::from_secs(5))
        .build()
        .unwrap();
    let app = app(layer, h.clone());
    let answers = fire(&app, 100, "w-1").await;
    assert_eq!(h.runs.load(Ordering::SeqCst), 1);
    assert!(answers.iter().all(|a| a.status == StatusCode::CREATED));
    assert_eq!(answers.iter().filter(|a| a.replayed()).count(), 99);
    assert!(answers.windows(2).all(|w| w[0].body == w[1].body));
}

async fn fire(app: &Router, n: usize, key: &str) -> Vec<Answer> {
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let app = app.clone();
            let key = key.to_string();
            tokio::spawn(async move {
                send(
                    &app,
                    post_with("/orders", Some(&key), "alice", "{\"slot\":3}"),
                )
                .await
            })
        })
        .collect();
    let mut answers = Vec::with_capacity(n);
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    answers
}

/// Item 11: a request dropped mid-handler releases its key; the retry is attempt 2.
async fn a_cancelled_request_frees_its_key<St: IdempotencyStore>(store: St, _clock: ManualClock) {
    let h = Handlers::default();
    let app = app(configure(store).build().unwrap(), h.clone());
    let running = tokio::spawn({
        let app = app.clone();
        async move { send(&app, post_with("/slow", Some("cancel"), "alice", "")).await }
    });
    h.entered.notified().await;
    running.abort();
    assert!(running.await.unwrap_err().is_cancelled());
    // The memory store releases at once; Redis within its spawned release's round trip.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    let retry = loop {
        let mut retry = tokio::spawn({
            let app = app.clone();
            async move { send(&app, post_with("/slow", Some("cancel"), "alice", "")).await }
        });
        tokio::select! {
            _ = h.entered.notified() => {
                h.gate.notify_one();
                break retry.await.unwrap();
            }
            answer = &mut retry => {
                let answer = answer.unwrap();
                assert_eq!(answer.status, StatusCode::CONFLICT, "{}", answer.body);
                assert!(tokio::time::Instant::now() < deadline, "the key stayed locked");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    assert_eq!(
        (retry.status, retry.body.as_str()),
        (StatusCode::CREATED, "attempt 2")
    );
    assert_eq!(h.runs.load(Ordering::SeqCst), 2);
}

/// Item 11: an attempt that crashed (its lock never completed) is taken over after its lease.
async fn a_crashed_attempt_is_taken_over_after_its_lease<St: IdempotencyStore>(
    store: St,
    clock: ManualClock,
) {
    let h = Handlers::default();
    let app = app(configure(store.clone()).build().unwrap(), h.clone());
    let body = "{\"slot\":4}";
    let fingerprint = Fingerprint::of_request(
        &http::Method::POST,
        &"/orders".parse().unwrap(),
        body.as_bytes(),
    );
    let crashed = store
        .begin(
            RecordKey {
                scope: "u:alice",
                key: "crash",
            },
            &fingerprint,
            &Terms::default(),
        )
        .await
        .unwrap();
    assert!(matches!(crashed, Begin::Started { .. }));
    let blocked = send(&app, post_with("/orders", Some("crash"), "alice", body)).await;
    assert_eq!(blocked.status, StatusCode::CONFLICT);
    clock.advance(Duration::from_secs(61));
    let taken = send(&app, post_with("/orders", Some("crash"), "alice", body)).await;
    assert_eq!(taken.status, StatusCode::CREATED);
    let json: serde_json::Value = serde_json::from_str(&taken.body).unwrap();
    assert_eq!(
        json["attempt"], 2,
        "the handler learns an earlier attempt started"
    );
}

/// Item 10: after the retention period the key names a new request.
async fn retention_ends_replays<St: IdempotencyStore>(store: St, clock: ManualClock) {
    let h = Handlers::default();
    let app = app(configure(store).build().unwrap(), h.clone());
    send(&app, post_with("/orders", Some("old"), "alice", "{}")).await;
    clock.advance(Duration::from_secs(24 * 3600 - 1));
    assert!(
        send(&app, post_with("/orders", Some("old"), "alice", "{}"))
            .await
            .replayed()
    );
    clock.advance(Duration::from_secs(1));
    let fresh = send(
        &app,
        post_with("/orders", Some("old"), "alice", "{\"new\":1}"),
    )
    .await;
    assert_eq!(fresh.status, StatusCode::CREATED);
    assert!(!fresh.replayed());
    assert_eq!(h.runs.load(Ordering::SeqCst), 2);
}

/// Item 9: nothing is kept for a request refused before it executed: by an inner policy layer
/// (its response carries a Rejection) or by the handler's own validation (NotExecuted).
async fn nothing_is_kept_for_refused_requests<St: IdempotencyStore>(store: St, clock: ManualClock) {
    let h = Handlers::default();
    let limiter = RateLimitLayer::builder(MemoryRateLimitStore::new(
        &MemoryBackend::builder()
            .clock(clock.clone())
            .build()
            .unwrap(),
    ))
    .tier("default", Quota::per_minute(1))
    .build()
    .unwrap();
    let limited = Router::new()
        .route("/orders", post(create))
        .route_layer(limiter)
        .with_state(h.clone())
        .layer(configure(store.clone()).build().unwrap())
        .layer(axum::middleware::map_request(who));
    assert_eq!(
        send(&limited, post_with("/orders", Some("a"), "alice", "{}"))
            .await
            .status,
        201
    );
    let refused = send(&limited, post_with("/orders", Some("b"), "alice", "{}")).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    clock.advance(Duration::from_secs(60));
    let retried = send(&limited, post_with("/orders", Some("b"), "alice", "{}")).await;
    assert_eq!(retried.status, StatusCode::CREATED, "the 429 was not kept");

    let app = app(configure(store).build().unwrap(), h.clone());
    let invalid = send(&app, post_with("/validate", Some("v"), "alice", "bad")).await;
    assert_eq!(invalid.status, StatusCode::BAD_REQUEST);
    let fixed = send(&app, post_with("/validate", Some("v"), "alice", "good")).await;
    assert_eq!(
        fixed.status,
        StatusCode::CREATED,
        "no 422: the invalid request was not kept"
    );
    assert!(
        send(&app, post_with("/validate", Some("v"), "alice", "good"))
            .await
            .replayed()
    );
}

/// A response over the storage limit is sent whole, and never runs twice.
async fn oversized_responses_are_sent_not_kept<St: IdempotencyStore>(
    store: St,
    _clock: ManualClock,
) {
    let h = Handlers::default();
    let app = app(configure(store).build().unwrap(), h.clone());
    let first = send(&app, post_with("/big", Some("big"), "alice", "")).await;
    assert_eq!((first.status, first.body.len()), (StatusCode::OK, 4096));
    let retry = send(&app, post_with("/big", Some("big"), "alice", "")).await;
    assert_eq!(retry.status, StatusCode::CONFLICT);
    assert_eq!(retry.error(), "idempotency_response_not_kept");
    assert!(retry.body.contains("200"), "{}", retry.body);
    assert!(retry.headers.get("retry-after").is_none());
    assert_eq!(h.runs.load(Ordering::SeqCst), 1);
}

/// Bodies over the limit are 413, announced or streamed, before the handler.
async fn oversized_request_bodies_are_413<St: IdempotencyStore>(store: St, _clock: ManualClock) {
    let h = Handlers::default();
    let app = app(configure(store).build().unwrap(), h.clone());
    let mut announced = post_with("/orders", Some("big"), "alice", &"x".repeat(2048));
    announced
        .headers_mut()
        .insert("content-length", http::HeaderValue::from_static("2048"));
    let announced = send(&app, announced).await;
    assert_eq!(announced.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(announced.error(), "request_body_too_large");
    // No Content-Length: the limit is found while reading.
    let streamed = post_with("/orders", Some("big2"), "alice", &"x".repeat(1400));
    assert_eq!(
        send(&app, streamed).await.status,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    assert_eq!(h.runs.load(Ordering::SeqCst), 0);
}

// ---- backends --------------------------------------------------------------------------------

fn memory(clock: &ManualClock) -> MemoryIdempotencyStore {
    MemoryIdempotencyStore::new(&common::memory_backend(clock))
}

fn redis(backend: &api_policy::backend::RedisBackend) -> RedisIdempotencyStore {
    RedisIdempotencyStore::new(backend)
}

on_both_backends!(
    replays_the_first_answer,
    keys_bare_or_quoted_and_bad_ones,
    methods_and_required_routes,
    errors_are_replayed_unless_released,
    reused_key_with_another_request_is_422,
    keys_are_scoped_by_principal,
    concurrent_duplicates_get_409,
    wait_mode_replays_to_duplicates,
    a_cancelled_request_frees_its_key,
    a_crashed_attempt_is_taken_over_after_its_lease,
    retention_ends_replays,
    nothing_is_kept_for_refused_requests,
    oversized_responses_are_sent_not_kept,
    oversized_request_bodies_are_413,
);

/// A duplicate waiting for the first attempt gets its replay as soon as the first ends: the
/// memory store wakes it. (Polling, as the Redis store does, would answer it at its next try:
/// with these timings, about 150 ms late.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_duplicate_is_answered_when_the_first_ends() {
    let clock = ManualClock::at_micros(T0);
    let h = Handlers::default();
    let layer = configure(memory(&clock))
        .wait_for_in_flight(Duration::from_secs(5))
        .build()
        .unwrap();
    let app = app(layer, h.clone());
    let post = |app: &Router| {
        let app = app.clone();
        tokio::spawn(async move { send(&app, post_with("/slow", Some("w-2"), "alice", "")).await })
    };
    let first = post(&app);
    h.entered.notified().await;
    let duplicate = post(&app);
    // Just after the duplicate's sixth try (5 ms doubling: 5, 15, 35, 75, 155 ms), so a poll
    // would come next at 315 ms.
    tokio::time::sleep(Duration::from_millis(165)).await;
    h.gate.notify_one();
    let first = first.await.unwrap();
    let ended = std::time::Instant::now();
    let duplicate = duplicate.await.unwrap();
    let late = ended.elapsed();
    assert_eq!(first.status, StatusCode::CREATED);
    assert!(
        duplicate.replayed(),
        "the duplicate gets the first's answer"
    );
    assert_eq!(duplicate.body, first.body);
    assert_eq!(h.runs.load(Ordering::SeqCst), 1);
    assert!(
        late < Duration::from_millis(50),
        "the duplicate was answered {late:?} after the first"
    );
}

/// Two separate stacks (two connections, two layers) sharing one Redis: 100 concurrent
/// duplicates split between them still run the handler once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stacks_sharing_redis_run_once() {
    let Some(url) = common::redis_or_skip("two_stacks_sharing_redis_run_once").await else {
        return;
    };
    let prefix = common::unique_prefix("two_stacks");
    let h = Handlers {
        delay: Duration::from_millis(300),
        ..Handlers::default()
    };
    let stack = |wait: bool| {
        let backend = RedisBackend::builder(url.clone())
            .prefix(prefix.clone())
            .build()
            .unwrap();
        let mut builder = configure(RedisIdempotencyStore::new(&backend));
        if wait {
            builder = builder.wait_for_in_flight(Duration::from_secs(5));
        }
        app(builder.build().unwrap(), h.clone())
    };
    for (wait, key) in [(false, "fleet-409"), (true, "fleet-wait")] {
        let (a, b) = (stack(wait), stack(wait));
        h.runs.store(0, Ordering::SeqCst);
        let tasks: Vec<_> = (0..100)
            .map(|i| {
                let app = if i % 2 == 0 { a.clone() } else { b.clone() };
                tokio::spawn(async move {
                    send(&app, post_with("/orders", Some(key), "alice", "{}")).await
                })
            })
            .collect();
        let mut statuses = Vec::new();
        for task in tasks {
            statuses.push(task.await.unwrap().status);
        }
        assert_eq!(h.runs.load(Ordering::SeqCst), 1, "{key}");
        let created = statuses
            .iter()
            .filter(|s| **s == StatusCode::CREATED)
            .count();
        if wait {
            assert_eq!(created, 100, "{key}");
        } else {
            assert_eq!(created, 1, "{key}");
            assert_eq!(
                statuses
                    .iter()
                    .filter(|s| **s == StatusCode::CONFLICT)
                    .count(),
                99
            );
        }
    }
}

/// The store down: 503 with Retry-After, and the handler never runs (fail closed).
#[tokio::test]
async fn an_unreachable_store_fails_closed() {
    let backend = RedisBackend::builder(format!("redis://127.0.0.1:{}", common::free_port()))
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let h = Handlers::default();
    let layer = configure(RedisIdempotencyStore::new(&backend))
        .build()
        .unwrap();
    let app = app(layer.clone(), h.clone());
    let answer = send(&app, post_with("/orders", Some("down"), "alice", "{}")).await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(answer.error(), "idempotency_unavailable");
    assert_eq!(answer.headers["retry-after"], "1");
    assert_eq!(h.runs.load(Ordering::SeqCst), 0);
    assert_eq!(layer.store_failures(), 1);
    // Requests without a key do not touch the store.
    assert_eq!(
        send(&app, post_with("/orders/1", None, "alice", "{}"))
            .await
            .status,
        201
    );
}

/// Builder mistakes are configuration errors naming the field.
#[test]
fn bad_configuration_is_refused_at_build() {
    let store = MemoryIdempotencyStore::new(&MemoryBackend::new());
    let error = IdempotencyLayer::builder(store.clone())
        .require("orders")
        .build()
        .unwrap_err();
    assert!(error.field.starts_with("idempotency.routes"), "{error}");
    let error = IdempotencyLayer::builder(store.clone())
        .lease(Duration::ZERO)
        .build()
        .unwrap_err();
    assert_eq!(error.field, "idempotency.lease");
    let error = IdempotencyLayer::builder(store)
        .methods([])
        .build()
        .unwrap_err();
    assert_eq!(error.field, "idempotency.methods");
}
