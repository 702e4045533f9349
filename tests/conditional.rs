//! Conditional requests: RFC 9110 section 13.2.2 as a table, then the layer over axum.

#[macro_use]
mod common;

use common::Answer;

use std::time::Duration;

use api_policy::conditional::{EntityTag, Evaluation, Preconditions, Validators, evaluate};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};

use Evaluation::{NotModified as N304, PreconditionFailed as F412, Proceed as GO};

/// The current representation in the table: `"v2"`, last modified at `MODIFIED`.
const MODIFIED: &str = "Tue, 15 Nov 1994 08:12:31 GMT";
const BEFORE: &str = "Tue, 15 Nov 1994 08:12:30 GMT";
const AFTER: &str = "Tue, 15 Nov 1994 08:12:32 GMT";

#[derive(Clone, Copy)]
enum Current {
    /// `"v2"`, modified at MODIFIED (plus half a second: dates compare in whole seconds).
    Tagged,
    /// Only `W/"v2"`.
    WeakOnly,
    /// A representation with neither validator.
    Bare,
    /// No current representation.
    Missing,
}

fn evaluate_row(
    method: &str,
    headers: &[(&str, &str)],
    current: Current,
    unconditional: Option<u16>,
) -> Evaluation {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    let preconditions = Preconditions::from_headers(&map).expect("well-formed");
    let strong = EntityTag::strong("v2").unwrap();
    let weak = EntityTag::weak("v2").unwrap();
    let modified = httpdate::parse_http_date(MODIFIED).unwrap() + Duration::from_millis(500);
    let validators = match current {
        Current::Tagged => Some(Validators {
            etag: Some(&strong),
            last_modified: Some(modified),
        }),
        Current::WeakOnly => Some(Validators {
            etag: Some(&weak),
            last_modified: None,
        }),
        Current::Bare => Some(Validators::default()),
        Current::Missing => None,
    };
    evaluate(
        &Method::from_bytes(method.as_bytes()).unwrap(),
        &preconditions,
        validators,
        unconditional.map(|s| StatusCode::from_u16(s).unwrap()),
    )
}

/// Name, method, request headers, current representation, unconditional status, expected.
type Row = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
    Current,
    Option<u16>,
    Evaluation,
);

#[test]
fn rfc_9110_evaluation_table() {
    use Current::*;
    #[rustfmt::skip]
    let table: &[Row] = &[
        // SEMANTICS 1: the order. If-Match first...
        ("if-match hit", "PUT", &[("if-match", "\"v2\"")], Tagged, None, GO),
        ("if-match miss", "PUT", &[("if-match", "\"v1\"")], Tagged, None, F412),
        ("if-match miss beats if-none-match", "GET", &[("if-match", "\"v1\""), ("if-none-match", "\"v2\"")], Tagged, None, F412),
        ("if-match hit then if-none-match hit on GET", "GET", &[("if-match", "\"v2\""), ("if-none-match", "\"v2\"")], Tagged, None, N304),
        // ...else If-Unmodified-Since.
        ("ius after modification", "PUT", &[("if-unmodified-since", AFTER)], Tagged, None, GO),
        ("ius at modification (whole seconds)", "PUT", &[("if-unmodified-since", MODIFIED)], Tagged, None, GO),
        ("ius before modification", "PUT", &[("if-unmodified-since", BEFORE)], Tagged, None, F412),
        ("ius ignored when if-match present", "PUT", &[("if-match", "\"v2\""), ("if-unmodified-since", BEFORE)], Tagged, None, GO),
        ("ius ignored without a modification date", "PUT", &[("if-unmodified-since", BEFORE)], Bare, None, GO),
        // Then If-None-Match: 304 for GET/HEAD, 412 otherwise.
        ("inm hit GET", "GET", &[("if-none-match", "\"v2\"")], Tagged, None, N304),
        ("inm hit HEAD", "HEAD", &[("if-none-match", "\"v2\"")], Tagged, None, N304),
        ("inm hit POST", "POST", &[("if-none-match", "\"v2\"")], Tagged, None, F412),
        ("inm miss GET", "GET", &[("if-none-match", "\"v1\"")], Tagged, None, GO),
        // Then If-Modified-Since, only for GET/HEAD and only without If-None-Match.
        ("ims not modified", "GET", &[("if-modified-since", MODIFIED)], Tagged, None, N304),
        ("ims later", "GET", &[("if-modified-since", AFTER)], Tagged, None, N304),
        ("ims modified since", "GET", &[("if-modified-since", BEFORE)], Tagged, None, GO),
        ("ims ignored on PUT", "PUT", &[("if-modified-since", AFTER)], Tagged, None, GO),
        ("ims ignored with inm", "GET", &[("if-none-match", "\"v1\""), ("if-modified-since", AFTER)], Tagged, None, GO),
        ("ims ignored without a modification date", "GET", &[("if-modified-since", AFTER)], Bare, None, GO),
        // SEMANTICS 2: strong for If-Match, weak for If-None-Match, lists, `*`.
        ("weak tag never matches if-match", "PUT", &[("if-match", "W/\"v2\"")], Tagged, None, F412),
        ("weak current never matches if-match", "PUT", &[("if-match", "\"v2\"")], WeakOnly, None, F412),
        ("weak inm matches strong current", "GET", &[("if-none-match", "W/\"v2\"")], Tagged, None, N304),
        ("strong inm matches weak current", "GET", &[("if-none-match", "\"v2\"")], WeakOnly, None, N304),
        ("if-match list, one member matches", "PUT", &[("if-match", "\"v0\", \"v1\", \"v2\"")], Tagged, None, GO),
        ("if-match list over two lines", "PUT", &[("if-match", "\"v0\""), ("if-match", "\"v2\"")], Tagged, None, GO),
        ("inm list", "GET", &[("if-none-match", "\"a\", W/\"v2\"")], Tagged, None, N304),
        ("if-match * on existing", "PUT", &[("if-match", "*")], Bare, None, GO),
        ("inm * on existing GET", "GET", &[("if-none-match", "*")], Bare, None, N304),
        // SEMANTICS 3: `*` and missing representations.
        ("if-match * on missing", "PUT", &[("if-match", "*")], Missing, None, F412),
        ("if-match tag on missing", "PUT", &[("if-match", "\"v2\"")], Missing, None, F412),
        ("PUT inm * on existing", "PUT", &[("if-none-match", "*")], Tagged, None, F412),
        ("PUT inm * on missing", "PUT", &[("if-none-match", "*")], Missing, None, GO),
        // SEMANTICS 5: ignored when the answer would not be 2xx/412, and for OPTIONS/CONNECT/TRACE.
        ("DELETE missing with if-match is its 404", "DELETE", &[("if-match", "\"v2\"")], Missing, Some(404), GO),
        ("if-match still judged when the answer is 2xx", "DELETE", &[("if-match", "\"v1\"")], Tagged, Some(204), F412),
        ("if-match still judged when the answer is 412", "DELETE", &[("if-match", "\"v1\"")], Tagged, Some(412), F412),
        ("OPTIONS ignores", "OPTIONS", &[("if-match", "\"v1\"")], Tagged, None, GO),
        ("TRACE ignores", "TRACE", &[("if-none-match", "*")], Tagged, None, GO),
        // Invalid and repeated dates are ignored (RFC 9110 13.1.3, 13.1.4).
        ("invalid ius ignored", "PUT", &[("if-unmodified-since", "yesterday")], Tagged, None, GO),
        ("invalid ims ignored", "GET", &[("if-modified-since", "1994-11-15")], Tagged, None, GO),
        ("repeated ims ignored", "GET", &[("if-modified-since", AFTER), ("if-modified-since", AFTER)], Tagged, None, GO),
        ("rfc 850 date accepted", "GET", &[("if-modified-since", "Tuesday, 15-Nov-94 08:12:31 GMT")], Tagged, None, N304),
        ("asctime date accepted", "GET", &[("if-modified-since", "Tue Nov 15 08:12:31 1994")], Tagged, None, N304),
        ("no preconditions", "PUT", &[], Tagged, None, GO),
    ];
    for (name, method, headers, current, unconditional, expected) in table {
        assert_eq!(
            evaluate_row(method, headers, *current, *unconditional),
            *expected,
            "{name}"
        );
    }
}

#[test]
fn malformed_tag_lists_are_errors_and_guards_are_recognised() {
    for bad in ["v1", "\"open", "*, \"a\"", "W/v1", ""] {
        let mut map = HeaderMap::new();
        map.insert(http::header::IF_MATCH, HeaderValue::from_str(bad).unwrap());
        assert!(Preconditions::from_headers(&map).is_err(), "{bad:?}");
    }
    let mut map = HeaderMap::new();
    map.insert(
        http::header::IF_UNMODIFIED_SINCE,
        HeaderValue::from_static("garbage"),
    );
    let p = Preconditions::from_headers(&map).unwrap();
    assert!(!p.guards_update(), "an invalid date guards nothing");
    assert!(p.is_empty());
    map.insert(http::header::IF_MATCH, HeaderValue::from_static("\"v1\""));
    assert!(Preconditions::from_headers(&map).unwrap().guards_update());
}

// ---- the layer over axum ---------------------------------------------------------------------

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use api_policy::backend::{MemoryBackend, RedisBackend};
use api_policy::conditional::{
    ConditionalBuilder, ConditionalLayer, Current as Now, MemoryValidatorStore,
    RedisValidatorStore, ResourceRule, StoredValidators, ValidatorStore,
};
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::Request;

#[derive(Clone, Default)]
struct Items {
    data: Arc<Mutex<HashMap<String, (u32, String)>>>,
    handled: Arc<AtomicU32>,
    /// How long an update takes, so concurrent ones overlap.
    delay: Duration,
}

impl Items {
    fn with(items: &[(&str, &str)]) -> Self {
        let me = Self::default();
        for (id, name) in items {
            me.data
                .lock()
                .unwrap()
                .insert((*id).to_string(), (1, (*name).to_string()));
        }
        me
    }

    fn version(&self, id: &str) -> Option<u32> {
        self.data.lock().unwrap().get(id).map(|(v, _)| *v)
    }
}

fn item_json(id: &str, version: u32, name: &str) -> String {
    format!(r#"{{"id":"{id}","version":{version},"name":"{name}"}}"#)
}

async fn read_item(State(items): State<Items>, Path(id): Path<String>) -> Response {
    items.handled.fetch_add(1, Ordering::SeqCst);
    match items.data.lock().unwrap().get(&id) {
        Some((v, name)) => item_json(&id, *v, name).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// The item, with the modification date its store knows.
async fn read_dated_item(state: State<Items>, id: Path<String>) -> Response {
    let mut response = read_item(state, id).await;
    response.headers_mut().insert(
        http::header::LAST_MODIFIED,
        HeaderValue::from_static(MODIFIED),
    );
    response
}

async fn write_item(State(items): State<Items>, Path(id): Path<String>, name: String) -> Response {
    items.handled.fetch_add(1, Ordering::SeqCst);
    if !items.delay.is_zero() {
        tokio::time::sleep(items.delay).await;
    }
    let mut data = items.data.lock().unwrap();
    let entry = data.entry(id.clone()).or_insert((0, String::new()));
    entry.0 += 1;
    entry.1 = name;
    // The new representation's ETag, as a GET of it gets: the handler states it (the layer
    // never digests an update's answer, which need not be the representation).
    let json = item_json(&id, entry.0, &entry.1);
    let etag = EntityTag::digest(json.as_bytes()).to_header_value();
    ([(http::header::ETAG, etag)], json).into_response()
}

async fn delete_item(State(items): State<Items>, Path(id): Path<String>) -> StatusCode {
    items.handled.fetch_add(1, Ordering::SeqCst);
    match items.data.lock().unwrap().remove(&id) {
        Some(_) => StatusCode::NO_CONTENT,
        None => StatusCode::NOT_FOUND,
    }
}

fn configure<St: ValidatorStore>(store: St) -> ConditionalBuilder<St> {
    ConditionalLayer::builder(store)
        .resource(
            "/items/{id}",
            ResourceRule::resource()
                .cache_control("private, max-age=300")
                .require_preconditions(),
        )
        .resource("/fast/{id}", ResourceRule::resource().fast_not_modified())
        .resource(
            "/dated/{id}",
            ResourceRule::resource().require_preconditions(),
        )
        .max_body_bytes(64 * 1024)
}

fn app<St: ValidatorStore>(layer: ConditionalLayer<St>, items: Items) -> Router {
    Router::new()
        .route(
            "/items/{id}",
            get(read_item).put(write_item).delete(delete_item),
        )
        .route("/fast/{id}", get(read_item).put(write_item))
        .route("/dated/{id}", get(read_dated_item).put(write_item))
        .route(
            "/tagged",
            get(|| async {
                (
                    [
                        ("etag", "W/\"handler-7\""),
                        ("last-modified", "Tue, 15 Nov 1994 08:12:31 GMT"),
                    ],
                    "tagged",
                )
            }),
        )
        .route("/big", get(|| async { "z".repeat(200 * 1024) }))
        .route(
            "/slow",
            get(|| async { Body::new(NotAtHand(["slow ", "body"].into(), false)) }),
        )
        .with_state(items)
        .layer(layer)
}

/// A body whose every frame, and its end, come only after a wait, as a proxied or streamed
/// body's do: the layer cannot digest it at once and must wait for it.
struct NotAtHand(std::collections::VecDeque<&'static str>, bool);

impl http_body::Body for NotAtHand {
    type Data = bytes::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, Self::Error>>> {
        let waited = std::mem::replace(&mut self.1, false);
        if !waited {
            self.1 = true;
            cx.waker().wake_by_ref();
            return std::task::Poll::Pending;
        }
        let part = self.0.pop_front();
        std::task::Poll::Ready(part.map(|p| Ok(http_body::Frame::data(p.into()))))
    }
}

async fn send(
    app: &Router,
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Answer {
    let mut request = Request::builder().method(method).uri(uri);
    for (n, v) in headers {
        request = request.header(*n, *v);
    }
    common::answer(app, request.body(Body::from(body.to_string())).unwrap()).await
}

/// SEMANTICS 4 and 6: generated strong ETags, 304 with the kept headers, handler tags respected.
async fn etags_and_revalidation<St: ValidatorStore>(
    store: St,
    _clock: api_policy::clock::ManualClock,
) {
    let items = Items::with(&[("a", "apple"), ("b", "banana")]);
    let app = app(configure(store).build().unwrap(), items.clone());
    let first = send(&app, "GET", "/items/a", &[], "").await;
    assert_eq!(first.status, StatusCode::OK);
    let etag = first.etag();
    assert!(etag.starts_with('"') && !etag.starts_with("W/"), "{etag}");
    assert_eq!(first.headers["cache-control"], "private, max-age=300");
    assert_eq!(
        send(&app, "GET", "/items/a", &[], "").await.etag(),
        etag,
        "stable"
    );
    assert_ne!(
        send(&app, "GET", "/items/b", &[], "").await.etag(),
        etag,
        "differs with the body"
    );
    for inm in [
        etag.clone(),
        format!("W/{etag}"),
        format!("\"x\", {etag}"),
        "*".into(),
    ] {
        let again = send(&app, "GET", "/items/a", &[("if-none-match", &inm)], "").await;
        assert_eq!(again.status, StatusCode::NOT_MODIFIED, "{inm}");
        assert!(again.body.is_empty());
        assert_eq!(again.etag(), etag);
        assert_eq!(again.headers["cache-control"], "private, max-age=300");
        assert!(again.headers.get("content-type").is_none());
    }
    let head = send(&app, "HEAD", "/items/a", &[("if-none-match", &etag)], "").await;
    assert_eq!(head.status, StatusCode::NOT_MODIFIED);
    let other = send(
        &app,
        "GET",
        "/items/a",
        &[("if-none-match", "\"other\"")],
        "",
    )
    .await;
    assert_eq!((other.status, other.etag()), (StatusCode::OK, etag.clone()));

    let tagged = send(&app, "GET", "/tagged", &[], "").await;
    assert_eq!(
        tagged.etag(),
        "W/\"handler-7\"",
        "a handler's ETag is never replaced"
    );
    assert!(
        tagged.headers.get("cache-control").is_none(),
        "no default off the resource routes"
    );
    let tagged = send(
        &app,
        "GET",
        "/tagged",
        &[("if-none-match", "\"handler-7\"")],
        "",
    )
    .await;
    assert_eq!(tagged.status, StatusCode::NOT_MODIFIED);
    let since = send(
        &app,
        "GET",
        "/tagged",
        &[("if-modified-since", "Tue, 15 Nov 1994 08:12:31 GMT")],
        "",
    )
    .await;
    assert_eq!(since.status, StatusCode::NOT_MODIFIED);

    let big = send(&app, "GET", "/big", &[], "").await;
    assert_eq!((big.status, big.body.len()), (StatusCode::OK, 200 * 1024));
    assert!(
        big.headers.get("etag").is_none(),
        "over the limit: streamed without an ETag"
    );

    // A body that is not at hand is waited for, then digested and judged as a buffered one is.
    let slow = send(&app, "GET", "/slow", &[], "").await;
    assert_eq!(
        (slow.status, slow.body.as_str()),
        (StatusCode::OK, "slow body")
    );
    assert!(
        slow.etag().starts_with('"'),
        "a strong ETag: {}",
        slow.etag()
    );
    let slow_again = send(&app, "GET", "/slow", &[("if-none-match", &slow.etag())], "").await;
    assert_eq!(slow_again.status, StatusCode::NOT_MODIFIED);

    let missing = send(&app, "GET", "/items/zz", &[("if-none-match", "*")], "").await;
    assert_eq!(
        missing.status,
        StatusCode::NOT_FOUND,
        "preconditions ignored on a 404"
    );
    let malformed = send(
        &app,
        "GET",
        "/items/a",
        &[("if-none-match", "unquoted")],
        "",
    )
    .await;
    assert_eq!(
        (malformed.status, malformed.error().as_str()),
        (StatusCode::BAD_REQUEST, "precondition_malformed")
    );
}

/// SEMANTICS 7 and 8: 428 without a precondition, 412 before the handler, 200 with the new ETag.
async fn updates_are_decided_before_the_handler<St: ValidatorStore>(
    store: St,
    _clock: api_policy::clock::ManualClock,
) {
    let items = Items::with(&[("a", "apple")]);
    let app = app(configure(store).build().unwrap(), items.clone());
    let none = send(&app, "PUT", "/items/a", &[], "avocado").await;
    assert_eq!(
        (none.status, none.error().as_str()),
        (StatusCode::PRECONDITION_REQUIRED, "precondition_required")
    );
    // Nothing known yet: an If-Match cannot be checked, so it fails safe, before the handler.
    let handled = items.handled.load(Ordering::SeqCst);
    let blind = send(
        &app,
        "PUT",
        "/items/a",
        &[("if-match", "\"whatever\"")],
        "x",
    )
    .await;
    assert_eq!(
        (blind.status, blind.error().as_str()),
        (StatusCode::PRECONDITION_FAILED, "precondition_failed")
    );
    assert_eq!(
        items.handled.load(Ordering::SeqCst),
        handled,
        "the handler of a 412 never ran"
    );
    let current = send(&app, "GET", "/items/a", &[], "").await.etag();
    let stale = send(
        &app,
        "PUT",
        "/items/a",
        &[("if-match", "\"stale\"")],
        "avocado",
    )
    .await;
    assert_eq!(stale.status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(
        items.version("a"),
        Some(1),
        "the handler of a 412 never ran"
    );
    assert_eq!(stale.etag(), current, "the 412 names the current ETag");
    let weak = send(
        &app,
        "PUT",
        "/items/a",
        &[("if-match", &format!("W/{current}"))],
        "avocado",
    )
    .await;
    assert_eq!(
        weak.status,
        StatusCode::PRECONDITION_FAILED,
        "If-Match compares strongly"
    );

    let ok = send(
        &app,
        "PUT",
        "/items/a",
        &[("if-match", &current)],
        "avocado",
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(items.version("a"), Some(2));
    let new = ok.etag();
    assert!(!new.is_empty() && new != current);
    assert_eq!(
        send(&app, "GET", "/items/a", &[], "").await.etag(),
        new,
        "the PUT's ETag is the new representation's"
    );
    let again = send(
        &app,
        "PUT",
        "/items/a",
        &[("if-match", &current)],
        "apricot",
    )
    .await;
    assert_eq!(
        again.status,
        StatusCode::PRECONDITION_FAILED,
        "the old ETag is stale now"
    );
    assert_eq!(items.version("a"), Some(2));

    // `*` and missing resources.
    let star = send(&app, "PUT", "/items/new", &[("if-match", "*")], "nut").await;
    assert_eq!(
        star.status,
        StatusCode::PRECONDITION_FAILED,
        "If-Match: * with nothing there"
    );
    let create = send(
        &app,
        "PUT",
        "/items/new",
        &[
            ("if-none-match", "*"),
            ("if-unmodified-since", "Tue, 15 Nov 1994 08:12:31 GMT"),
        ],
        "nut",
    )
    .await;
    assert_eq!(create.status, StatusCode::OK, "If-None-Match: * creates");
    let recreate = send(
        &app,
        "PUT",
        "/items/new",
        &[
            ("if-none-match", "*"),
            ("if-unmodified-since", "Tue, 15 Nov 1994 08:12:31 GMT"),
        ],
        "nut",
    )
    .await;
    assert_eq!(
        recreate.status,
        StatusCode::PRECONDITION_FAILED,
        "If-None-Match: * on an existing one"
    );
    // One resource however the path is encoded: the lock and the validators are shared.
    let encoded = send(&app, "PUT", "/items/%61", &[("if-match", &new)], "acerola").await;
    assert_eq!(encoded.status, StatusCode::OK);
    let after_encoded = send(&app, "PUT", "/items/a", &[("if-match", &new)], "x").await;
    assert_eq!(
        after_encoded.status,
        StatusCode::PRECONDITION_FAILED,
        "the encoded PUT moved it on"
    );
    let new = encoded.etag();
    // If-Unmodified-Since guards nothing here (no Last-Modified): still 428.
    let ius = send(
        &app,
        "PUT",
        "/items/a",
        &[("if-unmodified-since", "Tue, 15 Nov 1994 08:12:31 GMT")],
        "x",
    )
    .await;
    assert_eq!(ius.status, StatusCode::PRECONDITION_REQUIRED);
    let del = send(&app, "DELETE", "/items/a", &[("if-match", &new)], "").await;
    assert_eq!(del.status, StatusCode::NO_CONTENT);
    let after = send(&app, "PUT", "/items/a", &[("if-match", &new)], "x").await;
    assert_eq!(
        after.status,
        StatusCode::PRECONDITION_FAILED,
        "deleted: the old ETag matches nothing"
    );
}

/// Two PUTs with the same If-Match at once: exactly one wins.
async fn concurrent_updates_one_wins<St: ValidatorStore>(
    store: St,
    _clock: api_policy::clock::ManualClock,
) {
    let items = Items {
        delay: Duration::from_millis(100),
        ..Items::with(&[("a", "apple")])
    };
    let layer = configure(store).build().unwrap();
    let (one, two) = (app(layer.clone(), items.clone()), app(layer, items.clone()));
    let etag = send(&one, "GET", "/items/a", &[], "").await.etag();
    let guard = [("if-match", etag.as_str())];
    let (a, b) = tokio::join!(
        send(&one, "PUT", "/items/a", &guard, "first"),
        send(&two, "PUT", "/items/a", &guard, "second"),
    );
    let mut statuses = [a.status, b.status];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::OK, StatusCode::PRECONDITION_FAILED]);
    assert_eq!(items.version("a"), Some(2), "one write");
}

/// Starts a PUT of item `a` with `If-Match: held`, which holds the lock while its handler takes
/// the items' delay, and meanwhile sends one with `If-Match: stale`. Checks that the stale one was
/// 412 without waiting for the lock, while the slow one still ran; returns it and the slow one.
async fn stale_update_during_a_slow_one(
    app: &Router,
    items: &Items,
    held: &str,
    stale: &str,
) -> (Answer, tokio::task::JoinHandle<Answer>) {
    let handled = items.handled.load(Ordering::SeqCst);
    let slow = {
        let (app, held) = (app.clone(), held.to_string());
        tokio::spawn(
            async move { send(&app, "PUT", "/items/a", &[("if-match", &held)], "slow").await },
        )
    };
    // The slow update holds the lock once its handler has started.
    while items.handled.load(Ordering::SeqCst) == handled {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let asked = std::time::Instant::now();
    let answer = send(app, "PUT", "/items/a", &[("if-match", stale)], "stale").await;
    let waited = asked.elapsed();
    assert_eq!(answer.status, StatusCode::PRECONDITION_FAILED);
    assert!(
        waited < Duration::from_millis(200),
        "the stale If-Match waited {waited:?} for the lock"
    );
    assert!(
        !slow.is_finished(),
        "the slow update ended before the test could race it"
    );
    (answer, slow)
}

/// A precondition the current validators already fail is refused at once, even while another
/// update holds the resource's lock; one they pass waits for that update, and is judged after it.
async fn a_failed_precondition_does_not_wait_for_the_lock<St: ValidatorStore>(
    store: St,
    _clock: api_policy::clock::ManualClock,
) {
    let items = Items {
        delay: Duration::from_millis(400),
        ..Items::with(&[("a", "apple")])
    };
    let app = app(configure(store).build().unwrap(), items.clone());
    let etag = send(&app, "GET", "/items/a", &[], "").await.etag();
    let (stale, slow) = stale_update_during_a_slow_one(&app, &items, &etag, "\"stale\"").await;
    assert_eq!(stale.error(), "precondition_failed");
    // The tag the slow update was given still matches now: this one must wait, then fail.
    let same = send(&app, "PUT", "/items/a", &[("if-match", &etag)], "second").await;
    assert_eq!(same.status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(slow.await.expect("the slow update").status, StatusCode::OK);
    assert_eq!(items.version("a"), Some(2), "one write");
}

/// The fast path answers 304 from the known validators without calling the handler.
async fn fast_not_modified_skips_the_handler<St: ValidatorStore>(
    store: St,
    _clock: api_policy::clock::ManualClock,
) {
    let items = Items::with(&[("f", "fig")]);
    let app = app(configure(store).build().unwrap(), items.clone());
    let etag = send(&app, "GET", "/fast/f", &[], "").await.etag();
    // Learning is in the background: wait until it landed.
    let mut handled = 0;
    for _ in 0..100 {
        let before = items.handled.load(Ordering::SeqCst);
        let answer = send(&app, "GET", "/fast/f", &[("if-none-match", &etag)], "").await;
        assert_eq!(answer.status, StatusCode::NOT_MODIFIED);
        handled = items.handled.load(Ordering::SeqCst) - before;
        if handled == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(handled, 0, "the handler was still called");
}

fn memory(clock: &api_policy::clock::ManualClock) -> MemoryValidatorStore {
    MemoryValidatorStore::new(&common::memory_backend(clock))
}

fn redis(backend: &api_policy::backend::RedisBackend) -> RedisValidatorStore {
    RedisValidatorStore::new(backend)
}

const T0: u64 = 1_800_000_000_000_000;

/// SEMANTICS 7: a resource with a modification date still requires a precondition of an update;
/// only there does `If-Unmodified-Since` stand in for `If-Match`.
async fn dated_resources_still_require_a_precondition<St: ValidatorStore>(
    store: St,
    _clock: api_policy::clock::ManualClock,
) {
    let items = Items::with(&[("a", "apple")]);
    let app = app(configure(store).build().unwrap(), items.clone());
    let read = send(&app, "GET", "/dated/a", &[], "").await;
    assert_eq!(read.status, StatusCode::OK);
    assert_eq!(read.headers["last-modified"], MODIFIED);
    let handled = items.handled.load(Ordering::SeqCst);
    let none = send(&app, "PUT", "/dated/a", &[], "avocado").await;
    assert_eq!(
        (none.status, none.error().as_str()),
        (StatusCode::PRECONDITION_REQUIRED, "precondition_required")
    );
    assert_eq!(items.handled.load(Ordering::SeqCst), handled);
    let unmodified = send(
        &app,
        "PUT",
        "/dated/a",
        &[("if-unmodified-since", MODIFIED)],
        "avocado",
    )
    .await;
    assert_eq!(unmodified.status, StatusCode::OK);
    assert_eq!(items.version("a"), Some(2));
}

on_both_backends!(
    etags_and_revalidation,
    updates_are_decided_before_the_handler,
    dated_resources_still_require_a_precondition,
    concurrent_updates_one_wins,
    a_failed_precondition_does_not_wait_for_the_lock,
    fast_not_modified_skips_the_handler,
);

/// An update waiting for a resource's lock starts as soon as the update holding it ends: the
/// memory store wakes it. (Polling, as the Redis store does, starts it at its next try: with
/// these timings, 100 ms late.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_update_starts_when_the_lock_ends() {
    let clock = api_policy::clock::ManualClock::at_micros(T0);
    let items = Items {
        delay: Duration::from_millis(135),
        ..Items::with(&[("a", "apple")])
    };
    let app = app(configure(memory(&clock)).build().unwrap(), items.clone());
    let etag = send(&app, "GET", "/items/a", &[], "").await.etag();
    let put = |guard: String| {
        let app = app.clone();
        tokio::spawn(
            async move { send(&app, "PUT", "/items/a", &[("if-match", &guard)], "x").await },
        )
    };
    let started = items.handled.load(Ordering::SeqCst);
    let holding = put(etag);
    while items.handled.load(Ordering::SeqCst) == started {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // The holder's handler runs: the second update finds the lock busy, and waits.
    let waiting = put("*".to_string());
    let holder = holding.await.unwrap();
    let ended = std::time::Instant::now();
    assert_eq!(holder.status, StatusCode::OK);
    let deadline = ended + Duration::from_secs(2);
    while items.handled.load(Ordering::SeqCst) < started + 2 && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let late = ended.elapsed();
    assert!(
        late < Duration::from_millis(30),
        "the waiting update started {late:?} after the lock ended"
    );
    assert_eq!(waiting.await.unwrap().status, StatusCode::OK);
    assert_eq!(
        items.version("a"),
        Some(3),
        "both wrote, one after the other"
    );
}

/// Two separate stacks, each with its own Redis connection, sharing one Redis: exactly one of
/// two concurrent PUTs with the same If-Match succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stacks_sharing_redis_one_update_wins() {
    let Some(url) = common::redis_or_skip("two_stacks_one_update").await else {
        return;
    };
    let prefix = common::unique_prefix("two_stacks_cond");
    let items = Items {
        delay: Duration::from_millis(100),
        ..Items::with(&[("a", "apple")])
    };
    let stack = || {
        let backend = RedisBackend::builder(url.clone())
            .prefix(prefix.clone())
            .build()
            .unwrap();
        app(
            configure(RedisValidatorStore::new(&backend))
                .build()
                .unwrap(),
            items.clone(),
        )
    };
    let (one, two) = (stack(), stack());
    for round in 0..5 {
        let etag = send(&one, "GET", "/items/a", &[], "").await.etag();
        let guard = [("if-match", etag.as_str())];
        let (a, b) = tokio::join!(
            send(&one, "PUT", "/items/a", &guard, "first"),
            send(&two, "PUT", "/items/a", &guard, "second"),
        );
        let mut statuses = [a.status, b.status];
        statuses.sort();
        assert_eq!(
            statuses,
            [StatusCode::OK, StatusCode::PRECONDITION_FAILED],
            "round {round}"
        );
        assert_eq!(items.version("a"), Some(2 + round));
    }
}

/// A layer whose validators come from the items' versions, as from a version column.
fn with_lookup(items: &Items) -> ConditionalLayer<MemoryValidatorStore> {
    let source = items.clone();
    configure(MemoryValidatorStore::new(&MemoryBackend::new()))
        .lookup(move |resource| {
            let version = resource.param("id").and_then(|id| source.version(id));
            async move {
                Ok(match version {
                    Some(v) => Now::Exists(StoredValidators {
                        etag: Some(EntityTag::strong(format!("v{v}")).unwrap()),
                        last_modified: None,
                    }),
                    None => Now::Missing,
                })
            }
        })
        .build()
        .unwrap()
}

/// With a lookup (a version column), updates are decided from the application's own truth.
#[tokio::test]
async fn a_lookup_supplies_the_validators() {
    let items = Items::with(&[("a", "apple")]);
    let layer = with_lookup(&items);
    let app = app(layer, items.clone());
    let stale = send(&app, "PUT", "/items/a", &[("if-match", "\"v0\"")], "x").await;
    assert_eq!(stale.status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(stale.etag(), "\"v1\"");
    assert_eq!(items.handled.load(Ordering::SeqCst), 0, "no read, no write");
    let ok = send(&app, "PUT", "/items/a", &[("if-match", "\"v1\"")], "x").await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(items.version("a"), Some(2));
    let gone = send(
        &app,
        "DELETE",
        "/items/nothing",
        &[("if-match", "\"x\"")],
        "",
    )
    .await;
    assert_eq!(
        gone.status,
        StatusCode::NOT_FOUND,
        "a DELETE of a missing resource is its 404"
    );
}

/// With a lookup too, an update whose preconditions the application's validators already fail is
/// refused while another holds the lock, without waiting; one they pass waits for it.
#[tokio::test]
async fn a_lookup_refuses_a_stale_update_without_waiting() {
    let items = Items {
        delay: Duration::from_millis(400),
        ..Items::with(&[("a", "apple")])
    };
    let app = app(with_lookup(&items), items.clone());
    let (stale, slow) = stale_update_during_a_slow_one(&app, &items, "\"v1\"", "\"v0\"").await;
    assert_eq!(stale.etag(), "\"v1\"");
    let same = send(&app, "PUT", "/items/a", &[("if-match", "\"v1\"")], "z").await;
    assert_eq!(same.status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(same.etag(), "\"v2\"", "judged after the slow update");
    assert_eq!(slow.await.expect("the slow update").status, StatusCode::OK);
    assert_eq!(items.version("a"), Some(2), "one write");
}
