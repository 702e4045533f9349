//! What each fuzz target does with its input, shared by the cargo-fuzz targets in
//! `fuzz/fuzz_targets` and by `tests/fuzz_regressions.rs`, which replays every input kept in
//! `fuzz/regressions/<target>/` so a finding stays fixed. A panic is a finding; so is an answer
//! outside what the parser promises, which each function asserts.

#![allow(dead_code)]

use std::str::FromStr;
use std::sync::OnceLock;

use api_policy::backend::MemoryBackend;
use api_policy::conditional::{EntityTag, Preconditions, TagList, Validators, evaluate};
use api_policy::idempotency::{MAX_KEY_LEN, parse_key};
use api_policy::rate_limit::Quota;
use api_policy::stack::StackConfig;
use api_policy::versioning::ApiVersion;
use api_policy::webhook::{WebhookSecret, sign_stripe, verify_stripe};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode};

/// A fuzz target: it panics on what it finds.
pub type Target = fn(&[u8]);

/// The fuzz targets by name, each with its function.
pub const TARGETS: &[(&str, Target)] = &[
    ("idempotency_key", idempotency_key),
    ("entity_tags", entity_tags),
    ("preconditions", preconditions),
    ("stripe_signature", stripe_signature),
    ("authorization", authorization),
    ("version_headers", version_headers),
    ("config", config),
];

// The credentials of tests/data/hostile_stack.toml.
const SECRET: &[u8] = b"api-policy-demo-secret-change-me-0123";

/// Splits the input into `N` fields at NUL bytes (which no header value may hold); missing
/// fields are empty.
fn fields<const N: usize>(data: &[u8]) -> [&[u8]; N] {
    let mut out = [&[][..]; N];
    let mut parts = data.splitn(N, |&b| b == 0);
    for field in &mut out {
        *field = parts.next().unwrap_or_default();
    }
    out
}

pub fn idempotency_key(data: &[u8]) {
    if let Ok(key) = parse_key(data) {
        assert!((1..=MAX_KEY_LEN).contains(&key.len()), "{key:?}");
        assert!(key.bytes().all(|b| b.is_ascii_graphic()), "{key:?}");
    }
}

pub fn entity_tags(data: &[u8]) {
    if let Ok(tag) = EntityTag::parse(data) {
        let written = tag.to_header_value();
        assert_eq!(EntityTag::parse(written.as_bytes()), Ok(tag));
    }
    if let Ok(value) = HeaderValue::from_bytes(data) {
        let _ = TagList::from_headers([&value]);
    }
}

/// `If-Match`, `If-None-Match`, `If-Modified-Since`, `If-Unmodified-Since` and a current tag,
/// then RFC 9110 section 13.2.2's evaluation for each method that has one.
pub fn preconditions(data: &[u8]) {
    let [if_match, if_none_match, since, unmodified, current] = fields::<5>(data);
    let mut headers = HeaderMap::new();
    for (name, bytes) in [
        (http::header::IF_MATCH, if_match),
        (http::header::IF_NONE_MATCH, if_none_match),
        (http::header::IF_MODIFIED_SINCE, since),
        (http::header::IF_UNMODIFIED_SINCE, unmodified),
    ] {
        if let Ok(value) = HeaderValue::from_bytes(bytes) {
            headers.append(name, value);
        }
    }
    let Ok(preconditions) = Preconditions::from_headers(&headers) else {
        return;
    };
    let etag = EntityTag::parse(current).ok();
    let validators = Validators {
        etag: etag.as_ref(),
        last_modified: Some(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000)),
    };
    for method in [Method::GET, Method::HEAD, Method::PUT, Method::DELETE] {
        let _ = evaluate(&method, &preconditions, Some(validators), None);
        let _ = evaluate(&method, &preconditions, None, Some(StatusCode::OK));
    }
}

/// An arbitrary `Stripe-Signature` header, and a real one over the payload: the real one verifies
/// and the arbitrary one verifies only if it carries the real signature.
pub fn stripe_signature(data: &[u8]) {
    let [header, payload] = fields::<2>(data);
    let Ok(secret) = WebhookSecret::new("whsec_fuzz_secret") else {
        panic!("the secret is valid");
    };
    let now = 1_700_000_000;
    let real = sign_stripe(payload, &secret, now);
    let secrets = [secret];
    assert_eq!(
        verify_stripe(Some(real.as_bytes()), payload, &secrets, now, 300),
        Ok(now)
    );
    let _ = verify_stripe(Some(header), payload, &secrets, now, 300);
    let _ = verify_stripe(Some(header), payload, &secrets, u64::MAX, u64::MAX);
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(e) => panic!("a runtime: {e}"),
        }
    })
}

/// The stack of `tests/data/hostile_stack.toml`, which `tests/hostile_input.rs` also drives.
fn app() -> &'static axum::Router {
    static APP: OnceLock<axum::Router> = OnceLock::new();
    APP.get_or_init(|| {
        let text = include_str!("../tests/data/hostile_stack.toml");
        let config: StackConfig = match toml::from_str(text) {
            Ok(config) => config,
            Err(e) => panic!("the configuration parses: {e}"),
        };
        let stack = match runtime().block_on(async { config.build(&MemoryBackend::new()) }) {
            Ok(stack) => stack,
            Err(e) => panic!("the configuration builds: {e}"),
        };
        axum::Router::new()
            .route("/things", axum::routing::get(|| async { "things" }))
            .layer(stack)
    })
}

/// The stack's answer to a GET carrying these headers: always a 2xx or a 4xx.
fn send(headers: &[(HeaderName, &[u8])]) {
    use tower::ServiceExt;
    let mut request = Request::get("/things");
    for (name, bytes) in headers {
        if let Ok(value) = HeaderValue::from_bytes(bytes) {
            request = request.header(name, value);
        }
    }
    let Ok(request) = request.body(axum::body::Body::empty()) else {
        return;
    };
    let response = runtime().block_on(app().clone().oneshot(request));
    let status = match response {
        Ok(response) => response.status(),
        Err(e) => match e {},
    };
    assert!(status.is_success() || status.is_client_error(), "{status}");
}

/// A signed HS256 token whose claims are the input: the signature holds, so the claims parser
/// sees whatever the fuzzer makes.
fn token_over(claims: &[u8]) -> Vec<u8> {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims);
    let signing_input = format!("{header}.{payload}");
    let Ok(mut mac) = Hmac::<sha2::Sha256>::new_from_slice(SECRET) else {
        panic!("HMAC takes any key");
    };
    mac.update(signing_input.as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("Bearer {signing_input}.{signature}").into_bytes()
}

/// The first byte chooses: an arbitrary `Authorization` value, or a validly signed token over
/// arbitrary claims.
pub fn authorization(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let value = if mode % 2 == 0 {
        rest.to_vec()
    } else {
        token_over(rest)
    };
    send(&[(http::header::AUTHORIZATION, &value)]);
}

pub fn version_headers(data: &[u8]) {
    let [accept, version] = fields::<2>(data);
    send(&[
        (http::header::ACCEPT, accept),
        (HeaderName::from_static("api-version"), version),
    ]);
    if let Ok(text) = std::str::from_utf8(version)
        && let Ok(parsed) = ApiVersion::parse(text)
    {
        assert_eq!(ApiVersion::parse(&parsed.to_string()), Ok(parsed));
    }
}

/// A configuration file, built on the memory backend, and the strings inside one on their own.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = Quota::from_str(text);
    let _ = ApiVersion::parse(text);
    if let Ok(mut config) = toml::from_str::<StackConfig>(text) {
        // The audit log is opened for real, so it goes where the fuzzer cannot scatter files.
        if let Some(audit) = &mut config.audit {
            let dir = std::env::temp_dir().join("api-policy-fuzz-audit");
            let _ = std::fs::create_dir_all(&dir);
            audit.log = dir.join("audit.log");
        }
        if let Ok(backend) = config.backend.memory() {
            let _ = runtime().block_on(async { config.build(&backend).map(|_| ()) });
        }
    }
}
