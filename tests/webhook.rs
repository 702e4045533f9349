//! The webhook layer over real axum stacks: Stripe's vectors, tampering, de-duplication on the
//! memory store and a real Redis, and the HMAC-header mode.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use api_policy::backend::{MemoryBackend, RedisBackend};
use api_policy::clock::ManualClock;
use api_policy::idempotency::{
    IdempotencyKey, IdempotencyStore, MemoryIdempotencyStore, RedisIdempotencyStore,
};
use api_policy::webhook::{EventId, HmacHeader, WebhookLayer, WebhookSecret, sign_stripe};
use axum::Router;
use axum::body::Body;
use axum::extract::{Extension, State};
use axum::routing::post;
use http::{HeaderName, Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

const SECRET: &str = "whsec_vectors_primary_0123456789";

#[derive(Clone, Default)]
struct Seen {
    runs: Arc<AtomicU32>,
    /// Answer 500 while set, as a handler whose database is down would.
    failing: Arc<std::sync::atomic::AtomicBool>,
}

async fn handle(
    State(seen): State<Seen>,
    Extension(event): Extension<IdempotencyKey>,
    body: String,
) -> (StatusCode, String) {
    seen.runs.fetch_add(1, Ordering::SeqCst);
    let payload: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    assert_eq!(
        payload["id"].as_str(),
        Some(&*event.key),
        "the handler gets the verified bytes"
    );
    if seen.failing.load(Ordering::SeqCst) {
        return (StatusCode::INTERNAL_SERVER_ERROR, "database down".into());
    }
    (
        StatusCode::OK,
        format!("handled {} (attempt {})", event.key, event.attempt),
    )
}

fn stripe_app<St: IdempotencyStore>(store: St, clock: &ManualClock, seen: &Seen) -> Router {
    let layer = WebhookLayer::stripe(store, SECRET)
        .secret("whsec_vectors_rolled_9876543210")
        .clock(clock.clone())
        .max_body_bytes(4096)
        .build()
        .unwrap();
    Router::new()
        .route("/webhooks/stripe", post(handle))
        .with_state(seen.clone())
        .layer(layer)
}

fn delivery(signature: Option<&str>, payload: &str) -> Request<Body> {
    let mut request = Request::post("/webhooks/stripe").header("content-type", "application/json");
    if let Some(signature) = signature {
        request = request.header("stripe-signature", signature);
    }
    request.body(Body::from(payload.to_string())).unwrap()
}

async fn send(app: &Router, request: Request<Body>) -> (StatusCode, String, bool) {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let replayed = response.headers().contains_key("idempotent-replayed");
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        String::from_utf8_lossy(&body).into_owned(),
        replayed,
    )
}

fn error_of(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_string))
        .unwrap_or_default()
}

fn vectors() -> serde_json::Value {
    serde_json::from_str(include_str!("data/stripe-webhooks.json")).unwrap()
}

/// Every vector signed by Stripe's own library, through HTTP: valid ones reach the handler,
/// invalid ones get 400 and never do. Each valid case uses a fresh store (same event id).
#[tokio::test]
async fn stripe_vectors_through_http() {
    let v = vectors();
    let payload = v["payload"].as_str().unwrap();
    for case in v["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let secret = case["secret"].as_str().unwrap();
        let clock = ManualClock::at_secs(case["now"].as_u64().unwrap());
        let seen = Seen::default();
        let layer =
            WebhookLayer::stripe(MemoryIdempotencyStore::new(&MemoryBackend::new()), secret)
                .clock(clock.clone())
                .build()
                .unwrap();
        let app = Router::new()
            .route("/webhooks/stripe", post(handle))
            .with_state(seen.clone())
            .layer(layer);
        let (status, body, _) = send(&app, delivery(case["header"].as_str(), payload)).await;
        let valid = case["expect"] == "valid";
        assert_eq!(status == StatusCode::OK, valid, "{name}: {status} {body}");
        assert_eq!(seen.runs.load(Ordering::SeqCst), u32::from(valid), "{name}");
        if !valid {
            assert_eq!(status, StatusCode::BAD_REQUEST, "{name}");
            assert!(error_of(&body).starts_with("webhook_"), "{name}: {body}");
        }
    }
}

/// Tampered body, stale timestamp, missing header, wrong secret: 400 each, with its reason.
async fn refusals_name_their_reason<St: IdempotencyStore>(store: St) {
    let v = vectors();
    let clock = ManualClock::at_secs(1_767_225_610);
    let seen = Seen::default();
    let app = stripe_app(store, &clock, &seen);
    let tampered = send(
        &app,
        delivery(
            v["tampered_header"].as_str(),
            v["tampered_payload"].as_str().unwrap(),
        ),
    )
    .await;
    assert_eq!(
        (tampered.0, error_of(&tampered.1).as_str()),
        (StatusCode::BAD_REQUEST, "webhook_signature_mismatch")
    );
    let payload = r#"{"id":"evt_stale"}"#;
    let secret = WebhookSecret::new(SECRET).unwrap();
    let stale = sign_stripe(payload.as_bytes(), &secret, 1_767_225_610 - 301);
    let (status, body, _) = send(&app, delivery(Some(&stale), payload)).await;
    assert_eq!(
        (status, error_of(&body).as_str()),
        (StatusCode::BAD_REQUEST, "webhook_timestamp_stale")
    );
    let (status, body, _) = send(&app, delivery(None, payload)).await;
    assert_eq!(
        (status, error_of(&body).as_str()),
        (StatusCode::BAD_REQUEST, "webhook_signature_missing")
    );
    let wrong = sign_stripe(
        payload.as_bytes(),
        &WebhookSecret::new("whsec_wrong").unwrap(),
        1_767_225_610,
    );
    let (status, body, _) = send(&app, delivery(Some(&wrong), payload)).await;
    assert_eq!(
        (status, error_of(&body).as_str()),
        (StatusCode::BAD_REQUEST, "webhook_signature_mismatch")
    );
    let good = sign_stripe(payload.as_bytes(), &secret, 1_767_225_610);
    let twice = Request::post("/webhooks/stripe")
        .header("stripe-signature", &good)
        .header("stripe-signature", &good)
        .body(Body::from(payload))
        .unwrap();
    assert_eq!(send(&app, twice).await.0, StatusCode::BAD_REQUEST);
    let no_id = r#"{"type":"ping"}"#;
    let signed = sign_stripe(no_id.as_bytes(), &secret, 1_767_225_610);
    let (status, body, _) = send(&app, delivery(Some(&signed), no_id)).await;
    assert_eq!(
        (status, error_of(&body).as_str()),
        (StatusCode::BAD_REQUEST, "webhook_event_id_missing")
    );
    let big = format!(r#"{{"id":"evt_big","pad":"{}"}}"#, "x".repeat(5000));
    let signed = sign_stripe(big.as_bytes(), &secret, 1_767_225_610);
    assert_eq!(
        send(&app, delivery(Some(&signed), &big)).await.0,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    assert_eq!(
        seen.runs.load(Ordering::SeqCst),
        0,
        "no refused delivery reached the handler"
    );
}

/// A repeated delivery of one event (signed again, later) gets 200 without running the handler;
/// a failed handling is not kept, so the sender's retry runs it again.
async fn each_event_runs_once<St: IdempotencyStore>(store: St) {
    let clock = ManualClock::at_secs(1_767_225_600);
    let seen = Seen::default();
    let app = stripe_app(store, &clock, &seen);
    let secret = WebhookSecret::new(SECRET).unwrap();
    let payload = r#"{"id":"evt_once","type":"payment_intent.succeeded"}"#;
    let first = send(
        &app,
        delivery(
            Some(&sign_stripe(payload.as_bytes(), &secret, 1_767_225_600)),
            payload,
        ),
    )
    .await;
    assert_eq!((first.0, first.2), (StatusCode::OK, false));
    clock.advance(Duration::from_secs(3600));
    let resent = sign_stripe(payload.as_bytes(), &secret, 1_767_229_200);
    let again = send(&app, delivery(Some(&resent), payload)).await;
    assert_eq!(
        (again.0, again.1.as_str(), again.2),
        (StatusCode::OK, first.1.as_str(), true)
    );
    assert_eq!(seen.runs.load(Ordering::SeqCst), 1);

    seen.failing.store(true, Ordering::SeqCst);
    let payload = r#"{"id":"evt_retry"}"#;
    let signed = sign_stripe(payload.as_bytes(), &secret, 1_767_229_200);
    assert_eq!(
        send(&app, delivery(Some(&signed), payload)).await.0,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    seen.failing.store(false, Ordering::SeqCst);
    let (status, body, replayed) = send(&app, delivery(Some(&signed), payload)).await;
    assert_eq!((status, replayed), (StatusCode::OK, false));
    assert_eq!(body, "handled evt_retry (attempt 2)");
    assert_eq!(seen.runs.load(Ordering::SeqCst), 3);

    // Concurrent duplicate deliveries: the handler runs once.
    let payload = r#"{"id":"evt_burst"}"#;
    let signed = sign_stripe(payload.as_bytes(), &secret, 1_767_229_200);
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (app, signed) = (app.clone(), signed.clone());
            tokio::spawn(async move { send(&app, delivery(Some(&signed), payload)).await })
        })
        .collect();
    for task in tasks {
        let status = task.await.unwrap().0;
        assert!(
            status == StatusCode::OK || status == StatusCode::CONFLICT,
            "{status}"
        );
    }
    assert_eq!(seen.runs.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn memory_refusals_name_their_reason() {
    refusals_name_their_reason(MemoryIdempotencyStore::new(&MemoryBackend::new())).await;
}

#[tokio::test]
async fn memory_each_event_runs_once() {
    each_event_runs_once(MemoryIdempotencyStore::new(&MemoryBackend::new())).await;
}

async fn redis_store(test: &str) -> Option<RedisIdempotencyStore> {
    let url = common::redis_or_skip(test).await?;
    let backend = RedisBackend::builder(url)
        .prefix(common::unique_prefix(test))
        .build()
        .unwrap();
    Some(RedisIdempotencyStore::new(&backend))
}

#[tokio::test]
async fn redis_refusals_name_their_reason() {
    let Some(store) = redis_store("webhook_refusals").await else {
        return;
    };
    refusals_name_their_reason(store).await;
}

#[tokio::test]
async fn redis_each_event_runs_once() {
    let Some(store) = redis_store("webhook_once").await else {
        return;
    };
    each_event_runs_once(store).await;
}

/// GitHub's scheme: `X-Hub-Signature-256: sha256=<hex>`, de-duplicated by `X-GitHub-Delivery`.
#[tokio::test]
async fn github_style_hmac_header() {
    let seen = Seen::default();
    let layer = WebhookLayer::hmac(
        MemoryIdempotencyStore::new(&MemoryBackend::new()),
        "github",
        HmacHeader::github(),
        "It's a Secret to Everybody",
    )
    .event_id(EventId::Header(HeaderName::from_static(
        "x-github-delivery",
    )))
    .build()
    .unwrap();
    let app = Router::new()
        .route(
            "/webhooks/github",
            post(|State(seen): State<Seen>| async move {
                seen.runs.fetch_add(1, Ordering::SeqCst);
                "ok"
            }),
        )
        .with_state(seen.clone())
        .layer(layer);
    let secret = WebhookSecret::new("It's a Secret to Everybody").unwrap();
    let payload = r#"{"zen":"Design for failure."}"#;
    let signature = HmacHeader::github().sign(payload.as_bytes(), &secret);
    assert!(signature.starts_with("sha256="));
    let request = |signature: &str, delivery: &str| {
        Request::post("/webhooks/github")
            .header("x-hub-signature-256", signature)
            .header("x-github-delivery", delivery)
            .body(Body::from(payload))
            .unwrap()
    };
    assert_eq!(
        send(&app, request(&signature, "d-1")).await.0,
        StatusCode::OK
    );
    assert!(send(&app, request(&signature, "d-1")).await.2, "replayed");
    assert_eq!(
        send(&app, request(&signature, "d-2")).await.0,
        StatusCode::OK
    );
    let forged = format!("sha256={}", "0".repeat(64));
    let (status, body, _) = send(&app, request(&forged, "d-3")).await;
    assert_eq!(
        (status, error_of(&body).as_str()),
        (StatusCode::BAD_REQUEST, "webhook_signature_mismatch")
    );
    assert_eq!(seen.runs.load(Ordering::SeqCst), 2);
}

/// A handled event whose answer was too large to keep is still answered 200 on redelivery
/// (never a 409 the sender would retry for days); two endpoints named apart on one store each
/// handle the same event id.
#[tokio::test]
async fn redeliveries_get_200_and_endpoints_are_apart() {
    let store = MemoryIdempotencyStore::new(&MemoryBackend::new());
    let seen = Seen::default();
    let endpoint = |name: &str| {
        WebhookLayer::stripe(store.clone(), SECRET)
            .name(name)
            .build()
            .unwrap()
    };
    let big = post(|State(seen): State<Seen>| async move {
        seen.runs.fetch_add(1, Ordering::SeqCst);
        "y".repeat(100 * 1024)
    });
    let app = Router::new()
        .route("/webhooks/stripe", big.layer(endpoint("account")))
        .route(
            "/webhooks/connect",
            post(|State(seen): State<Seen>| async move {
                seen.runs.fetch_add(1, Ordering::SeqCst);
                "ok"
            })
            .layer(endpoint("connect")),
        )
        .with_state(seen.clone());
    let payload = r#"{"id":"evt_shared"}"#;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let signed = sign_stripe(
        payload.as_bytes(),
        &WebhookSecret::new(SECRET).unwrap(),
        now,
    );
    let (status, body, replayed) = send(&app, delivery(Some(&signed), payload)).await;
    assert_eq!(
        (status, body.len(), replayed),
        (StatusCode::OK, 100 * 1024, false)
    );
    let (status, body, replayed) = send(&app, delivery(Some(&signed), payload)).await;
    assert_eq!(
        (status, body.as_str(), replayed),
        (StatusCode::OK, "", true)
    );
    let connect = Request::post("/webhooks/connect")
        .header("stripe-signature", &signed)
        .body(Body::from(payload))
        .unwrap();
    let (status, body, replayed) = send(&app, connect).await;
    assert_eq!(
        (status, body.as_str(), replayed),
        (StatusCode::OK, "ok", false)
    );
    assert_eq!(seen.runs.load(Ordering::SeqCst), 2);
}

#[test]
fn bad_webhook_configuration_is_refused() {
    let store = MemoryIdempotencyStore::new(&MemoryBackend::new());
    assert_eq!(
        WebhookLayer::stripe(store.clone(), "")
            .build()
            .unwrap_err()
            .field,
        "webhook.secret"
    );
    let error = WebhookLayer::stripe(store, "whsec_x")
        .event_id(EventId::JsonPointer("id".into()))
        .build()
        .unwrap_err();
    assert_eq!(error.field, "webhook.event_id");
}
