//! The versioning layer over axum, on the memory store and a real Redis (SEMANTICS.md,
//! deprecation and versioning items 1 to 5).

#[macro_use]
mod common;

use common::Answer;

use std::time::{Duration, UNIX_EPOCH};

use api_policy::Principal;
use api_policy::clock::ManualClock;
use api_policy::versioning::{
    ApiVersion, Deprecation, MemoryVersionPinStore, RedisVersionPinStore, VersionPinStore,
    VersionStatus, VersioningBuilder, VersioningLayer,
};
use axum::Router;
use axum::body::Body;
use axum::extract::{Extension, Request};
use axum::routing::get;
use http::StatusCode;

/// 2026-07-01T00:00:00Z, when v1 is deprecated.
const DEPRECATED: u64 = 1_782_864_000;
const SUNSET: &str = "Thu, 31 Dec 2026 23:59:59 GMT";
/// Some day in between: 2026-11-24T12:00:00Z.
const NOW: u64 = 1_795_521_600;
const T0: u64 = NOW * 1_000_000;
const GUIDE: &str = "https://docs.example.com/migrate-to-v2";

fn v(text: &str) -> ApiVersion {
    ApiVersion::parse(text).unwrap()
}

fn sunset() -> std::time::SystemTime {
    httpdate::parse_http_date(SUNSET).unwrap()
}

fn v1_deprecation() -> Deprecation {
    Deprecation::since(UNIX_EPOCH + Duration::from_secs(DEPRECATED))
        .sunset(sunset())
        .link(GUIDE)
}

fn configure<St: VersionPinStore>(store: St, clock: &ManualClock) -> VersioningBuilder<St> {
    VersioningLayer::builder(store, v("v2"))
        .version(v("v1"), VersionStatus::Deprecated(v1_deprecation()))
        .version(v("v2"), VersionStatus::Current)
        .version(v("2024-04-10"), VersionStatus::Current)
        .revision_of(v("2024-04-10"), 2)
        .version(
            v("v0"),
            VersionStatus::Retired {
                link: Some(GUIDE.into()),
            },
        )
        .path_prefix()
        .header("Api-Version")
        .accept_vendor("appointments")
        .clock(clock.clone())
}

async fn echo_version(Extension(version): Extension<ApiVersion>) -> String {
    format!("served {version}")
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

fn app<St: VersionPinStore>(layer: VersioningLayer<St>) -> Router {
    Router::new()
        .route("/api/v1/items/{id}", get(echo_version))
        .route("/api/v2/items/{id}", get(echo_version))
        .route("/api/items/{id}", get(echo_version))
        .route("/api/items/{id}/legacy-export", get(echo_version))
        .layer(layer)
        .layer(axum::middleware::map_request(who))
}

async fn send(app: &Router, uri: &str, headers: &[(&str, &str)]) -> Answer {
    let mut request = http::Request::get(uri);
    for (n, value) in headers {
        request = request.header(*n, *value);
    }
    common::answer(app, request.body(Body::empty()).unwrap()).await
}

// ---- scenarios -------------------------------------------------------------------------------

/// Items 1 to 3: the headers byte for byte; nothing else changes.
async fn deprecation_headers_and_nothing_else<St: VersionPinStore>(store: St, clock: ManualClock) {
    let app = app(configure(store, &clock).build().unwrap());
    let old = send(&app, "/api/v1/items/1", &[]).await;
    assert_eq!(
        (old.status, old.body.as_str()),
        (StatusCode::OK, "served v1")
    );
    assert_eq!(old.header("deprecation"), ["@1782864000"]);
    assert_eq!(old.header("sunset"), [SUNSET]);
    assert_eq!(
        old.header("link"),
        [
            format!("<{GUIDE}>; rel=\"deprecation\""),
            format!("<{GUIDE}>; rel=\"sunset\"")
        ]
    );
    assert_eq!(old.header("api-version"), ["v1"]);
    let current = send(&app, "/api/v2/items/1", &[]).await;
    assert_eq!(
        (current.status, current.body.as_str()),
        (StatusCode::OK, "served v2")
    );
    assert!(current.header("deprecation").is_empty() && current.header("sunset").is_empty());

    // The same v1 answer from a layer where v1 is current: identical status and body.
    let plain = VersioningLayer::builder(MemoryVersionPinStore::new(&Default::default()), v("v2"))
        .version(v("v1"), VersionStatus::Current)
        .version(v("v2"), VersionStatus::Current)
        .path_prefix()
        .build()
        .unwrap();
    let undeprecated = send(&app_with(plain), "/api/v1/items/1", &[]).await;
    assert_eq!(
        (undeprecated.status, undeprecated.body),
        (old.status, old.body)
    );
}

fn app_with<St: VersionPinStore>(layer: VersioningLayer<St>) -> Router {
    app(layer)
}

/// Item 5: resolution order, malformed 400, unknown and retired 410, Vary.
async fn resolution_order_and_refusals<St: VersionPinStore>(store: St, clock: ManualClock) {
    let app = app(configure(store, &clock).build().unwrap());
    let header = send(&app, "/api/items/1", &[("api-version", "v1")]).await;
    assert_eq!(header.body, "served v1");
    assert!(header.header("vary").contains(&"api-version".to_string()));
    let accept = send(
        &app,
        "/api/items/1",
        &[("accept", "application/vnd.appointments.v1+json")],
    )
    .await;
    assert_eq!(accept.body, "served v1");
    assert!(accept.header("vary").contains(&"accept".to_string()));
    let both = send(
        &app,
        "/api/items/1",
        &[
            ("api-version", "v2"),
            ("accept", "application/vnd.appointments.v1+json"),
        ],
    )
    .await;
    assert_eq!(
        both.body, "served v2",
        "the header comes first, as configured"
    );
    let dated = send(&app, "/api/v2/items/1", &[("api-version", "2024-04-10")]).await;
    assert_eq!(
        (dated.body.as_str(), dated.header("api-version")),
        ("served 2024-04-10", vec!["2024-04-10".to_string()]),
        "a v2 path takes a v2 revision"
    );
    let conflict = send(&app, "/api/v1/items/1", &[("api-version", "2024-04-10")]).await;
    assert_eq!(
        (conflict.status, conflict.error().as_str()),
        (StatusCode::BAD_REQUEST, "version_conflict")
    );
    assert_eq!(
        send(&app, "/api/items/1", &[]).await.body,
        "served v2",
        "the default"
    );

    for (headers, error) in [
        (&[("api-version", "next-tuesday")][..], "version_malformed"),
        (
            &[("accept", "application/vnd.appointments.vNext+json")],
            "version_malformed",
        ),
    ] {
        let answer = send(&app, "/api/items/1", headers).await;
        assert_eq!(
            (answer.status, answer.error().as_str()),
            (StatusCode::BAD_REQUEST, error)
        );
    }
    let unknown_date = send(&app, "/api/v2/items/1", &[("api-version", "2023-01-01")]).await;
    assert_eq!(
        (unknown_date.status, unknown_date.error().as_str()),
        (StatusCode::GONE, "version_unknown"),
        "an unknown date is unknown, not a conflict"
    );
    let unknown = send(&app, "/api/items/1", &[("api-version", "v9")]).await;
    assert_eq!(
        (unknown.status, unknown.error().as_str()),
        (StatusCode::GONE, "version_unknown")
    );
    let retired = send(&app, "/api/items/1", &[("api-version", "v0")]).await;
    assert_eq!(
        (retired.status, retired.error().as_str()),
        (StatusCode::GONE, "version_retired")
    );
    assert!(retired.body.contains(GUIDE), "{}", retired.body);
    assert_eq!(
        retired.header("link"),
        [format!("<{GUIDE}>; rel=\"deprecation\"")]
    );
}

/// Pins: a caller without an explicit version gets its pin; first use pins to the default.
async fn pins_decide_for_silent_callers<St: VersionPinStore>(store: St, clock: ManualClock) {
    let layer = configure(store.clone(), &clock).pins(true).build().unwrap();
    let app = app(layer);
    store.set_pin("u:old-client", Some(v("v1"))).await.unwrap();
    let pinned = send(&app, "/api/items/1", &[("x-user", "old-client")]).await;
    assert_eq!(pinned.body, "served v1");
    assert_eq!(pinned.header("deprecation"), ["@1782864000"]);
    assert_eq!(
        pinned.header("cache-control"),
        ["private"],
        "the version depended on the caller"
    );
    let explicit = send(
        &app,
        "/api/items/1",
        &[("x-user", "old-client"), ("api-version", "v2")],
    )
    .await;
    assert_eq!(
        explicit.body, "served v2",
        "an explicit version beats the pin"
    );
    assert_eq!(store.pinned("u:new-client").await.unwrap(), None);
    let first = send(&app, "/api/items/1", &[("x-user", "new-client")]).await;
    assert_eq!(first.body, "served v2");
    assert_eq!(
        store.pinned("u:new-client").await.unwrap(),
        Some(v("v2")),
        "pinned on first use"
    );
    assert_eq!(
        send(&app, "/api/items/1", &[]).await.body,
        "served v2",
        "anonymous: the default"
    );
}

/// Item 4 and brownouts, by the manual clock.
async fn sunsets_and_brownouts<St: VersionPinStore>(store: St, clock: ManualClock) {
    let brownout_start = UNIX_EPOCH + Duration::from_secs(NOW + 3_600);
    let layer = VersioningLayer::builder(store, v("v2"))
        .version(
            v("v1"),
            VersionStatus::Deprecated(
                v1_deprecation()
                    .enforce_sunset()
                    .brownout(brownout_start, Duration::from_secs(1_800)),
            ),
        )
        .version(v("v2"), VersionStatus::Current)
        .path_prefix()
        .clock(clock.clone())
        .build()
        .unwrap();
    let app = app(layer);
    assert_eq!(
        send(&app, "/api/v1/items/1", &[]).await.status,
        StatusCode::OK
    );
    clock.advance(Duration::from_secs(3_600));
    let brownout = send(&app, "/api/v1/items/1", &[]).await;
    assert_eq!(
        (brownout.status, brownout.error().as_str()),
        (StatusCode::GONE, "version_brownout")
    );
    assert_eq!(brownout.header("retry-after"), ["1800"]);
    assert!(brownout.body.contains(GUIDE));
    assert_eq!(
        send(&app, "/api/v2/items/1", &[]).await.status,
        StatusCode::OK,
        "v2 unaffected"
    );
    clock.advance(Duration::from_secs(1_800));
    assert_eq!(
        send(&app, "/api/v1/items/1", &[]).await.status,
        StatusCode::OK,
        "brownout over"
    );
    let sunset_secs = sunset().duration_since(UNIX_EPOCH).unwrap().as_secs();
    clock.set_micros((sunset_secs - 1) * 1_000_000);
    assert_eq!(
        send(&app, "/api/v1/items/1", &[]).await.status,
        StatusCode::OK
    );
    clock.set_micros(sunset_secs * 1_000_000);
    let gone = send(&app, "/api/v1/items/1", &[]).await;
    assert_eq!(
        (gone.status, gone.error().as_str()),
        (StatusCode::GONE, "version_sunset")
    );
}

/// The usage report names the callers of the deprecated version, with their counts.
async fn usage_report_names_callers<St: VersionPinStore>(store: St, clock: ManualClock) {
    let layer = configure(store, &clock)
        .deprecate_route(
            "/api/items/{id}/legacy-export",
            Deprecation::since(UNIX_EPOCH + Duration::from_secs(DEPRECATED)),
        )
        .build()
        .unwrap();
    let app = app(layer.clone());
    for (user, uri, times) in [
        ("alice", "/api/v1/items/1", 3),
        ("bob", "/api/v1/items/2", 1),
        ("carol", "/api/v2/items/1", 5),
        ("alice", "/api/v2/items/1", 2),
    ] {
        for _ in 0..times {
            send(&app, uri, &[("x-user", user)]).await;
        }
    }
    clock.advance(Duration::from_secs(86_400));
    send(&app, "/api/v1/items/3", &[("x-user", "bob")]).await;
    send(&app, "/api/v1/items/3", &[]).await;
    let route = send(&app, "/api/items/1/legacy-export", &[("x-user", "dave")]).await;
    assert_eq!(
        route.header("deprecation"),
        ["@1782864000"],
        "a deprecated route announces it too"
    );
    // The counts are written in the background: wait until they are all there.
    let mut report = Vec::new();
    for _ in 0..100 {
        report = layer.usage(v("v1"), 7).await.unwrap();
        if report.iter().map(|u| u.calls).sum::<u64>() == 6 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let summary: Vec<(String, u64, String)> = report
        .into_iter()
        .map(|u| (u.caller, u.calls, u.last_seen))
        .collect();
    assert_eq!(
        summary,
        [
            ("u:alice".to_string(), 3, "2026-11-24".to_string()),
            ("u:bob".to_string(), 2, "2026-11-25".to_string()),
            ("anonymous".to_string(), 1, "2026-11-25".to_string()),
        ]
    );
    assert!(
        layer.usage(v("v2"), 7).await.unwrap().is_empty(),
        "v2 is not deprecated"
    );
    assert_eq!(
        layer.usage(v("v1"), 1).await.unwrap().len(),
        2,
        "the last day only: bob and the anonymous caller"
    );
    assert_eq!(layer.deprecated_versions(), [v("v1")]);
}

fn memory(_clock: &ManualClock) -> MemoryVersionPinStore {
    MemoryVersionPinStore::new(&Default::default())
}

fn redis(backend: &api_policy::backend::RedisBackend) -> RedisVersionPinStore {
    RedisVersionPinStore::new(backend)
}

on_both_backends!(
    deprecation_headers_and_nothing_else,
    resolution_order_and_refusals,
    pins_decide_for_silent_callers,
    sunsets_and_brownouts,
    usage_report_names_callers,
);

/// A pin store that cannot answer: the default (open) or 503 (closed), never a silent
/// other version for a closed policy.
#[tokio::test]
async fn an_unreachable_pin_store_follows_its_policy() {
    let clock = ManualClock::at_micros(T0);
    let backend = api_policy::backend::RedisBackend::builder(format!(
        "redis://127.0.0.1:{}",
        common::free_port()
    ))
    .timeout(Duration::from_millis(200))
    .build()
    .unwrap();
    let store = RedisVersionPinStore::new(&backend);
    let open = app(configure(store.clone(), &clock)
        .pins(false)
        .build()
        .unwrap());
    let served = send(&open, "/api/items/1", &[("x-user", "old-client")]).await;
    assert_eq!(served.body, "served v2");
    let closed = app(configure(store, &clock)
        .pins(false)
        .on_store_error(api_policy::FailurePolicy::Closed)
        .build()
        .unwrap());
    let refused = send(&closed, "/api/items/1", &[("x-user", "old-client")]).await;
    assert_eq!(
        (refused.status, refused.error().as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "versioning_unavailable")
    );
    let named = send(
        &closed,
        "/api/items/1",
        &[("x-user", "old-client"), ("api-version", "v1")],
    )
    .await;
    assert_eq!(named.body, "served v1", "a named version needs no store");
}

#[test]
fn a_sunset_before_the_deprecation_fails_the_build() {
    let error = VersioningLayer::builder(MemoryVersionPinStore::new(&Default::default()), v("v2"))
        .version(
            v("v1"),
            VersionStatus::Deprecated(
                Deprecation::since(UNIX_EPOCH + Duration::from_secs(DEPRECATED))
                    .sunset(UNIX_EPOCH + Duration::from_secs(DEPRECATED - 1)),
            ),
        )
        .version(v("v2"), VersionStatus::Current)
        .build()
        .unwrap_err();
    assert_eq!(error.field, "versioning.versions.v1");
    let error = VersioningLayer::builder(MemoryVersionPinStore::new(&Default::default()), v("v3"))
        .version(v("v2"), VersionStatus::Current)
        .build()
        .unwrap_err();
    assert_eq!(error.field, "versioning.default");
}
