//! Properties of every parser a client reaches, over arbitrary input: none panics, each accepts
//! exactly what it documents, and what it writes it reads back. The parsers a layer keeps to
//! itself (`Authorization`, vendor `Accept` types, version headers) are driven through the
//! composed stack: whatever those headers hold, the answer is a 2xx or a 4xx, never a 5xx or a
//! panic.

mod common;

use std::str::FromStr;

use api_policy::backend::MemoryBackend;
use api_policy::conditional::{EntityTag, Preconditions, TagList};
use api_policy::idempotency::{MAX_KEY_LEN, parse_key};
use api_policy::rate_limit::Quota;
use api_policy::stack::StackConfig;
use api_policy::versioning::ApiVersion;
use api_policy::webhook::{WebhookSecret, sign_stripe, verify_stripe};
use axum::Router;
use axum::body::Body;
use axum::routing::get;
use common::{DEMO_AUDIENCE, DEMO_ISSUER, DEMO_SECRET, hs256_token};
use http::{HeaderMap, HeaderName, HeaderValue, Request};
use proptest::prelude::*;

/// Any bytes a header value may carry (no NUL, CR or LF), and some that it may not.
fn header_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..300),
        proptest::collection::vec(
            prop_oneof![0x20u8..0x7f, 0x80u8..=0xff, Just(b'\t')],
            0..300
        ),
        // Near misses of well-formed values.
        "[ ,\"W/*0-9a-zA-Z=;:./+-]{0,120}".prop_map(String::into_bytes),
    ]
}

fn header_value(bytes: &[u8]) -> Option<HeaderValue> {
    HeaderValue::from_bytes(bytes).ok()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn idempotency_keys_are_visible_ascii_of_bounded_length(bytes in header_bytes()) {
        if let Ok(key) = parse_key(&bytes) {
            prop_assert!((1..=MAX_KEY_LEN).contains(&key.len()), "{key:?}");
            prop_assert!(key.bytes().all(|b| b.is_ascii_graphic()), "{key:?}");
        }
    }

    #[test]
    fn idempotency_keys_read_back_bare_or_quoted(key in "[A-Za-z0-9_:.-]{1,255}") {
        let bare = parse_key(key.as_bytes()).map(|k| k.into_owned());
        prop_assert_eq!(bare, Ok(key.clone()));
        let quoted = format!("\"{key}\"");
        let unquoted = parse_key(quoted.as_bytes()).map(|k| k.into_owned());
        prop_assert_eq!(unquoted, Ok(key));
    }

    #[test]
    fn overlong_idempotency_keys_are_refused(key in "[a-z]{256,400}") {
        prop_assert!(parse_key(key.as_bytes()).is_err());
    }

    #[test]
    fn entity_tags_parse_anything_without_panicking(bytes in header_bytes()) {
        if let Ok(tag) = EntityTag::parse(&bytes) {
            // What was accepted is written back as a tag that parses to itself.
            let written = tag.to_header_value();
            prop_assert_eq!(EntityTag::parse(written.as_bytes()), Ok(tag));
        }
    }

    #[test]
    fn entity_tags_read_back(opaque in "[!#-~]{0,64}", weak in any::<bool>()) {
        let text = format!("{}\"{opaque}\"", if weak { "W/" } else { "" });
        let tag = EntityTag::parse(text.as_bytes());
        prop_assert!(tag.is_ok(), "{text}: {tag:?}");
        let tag = tag.unwrap_or_else(|_| unreachable!());
        let written = tag.to_header_value();
        prop_assert_eq!(written.as_bytes(), text.as_bytes());
    }

    #[test]
    fn precondition_headers_never_panic(
        if_match in header_bytes(),
        if_none_match in header_bytes(),
        since in header_bytes(),
        unmodified in header_bytes(),
    ) {
        let mut headers = HeaderMap::new();
        for (name, bytes) in [
            (http::header::IF_MATCH, &if_match),
            (http::header::IF_NONE_MATCH, &if_none_match),
            (http::header::IF_MODIFIED_SINCE, &since),
            (http::header::IF_UNMODIFIED_SINCE, &unmodified),
        ] {
            if let Some(value) = header_value(bytes) {
                headers.append(name, value);
            }
        }
        let _ = Preconditions::from_headers(&headers);
        let _ = TagList::from_headers(headers.get_all(http::header::IF_MATCH));
    }

    #[test]
    fn stripe_signatures_never_panic(
        header in header_bytes(),
        payload in proptest::collection::vec(any::<u8>(), 0..200),
        now in any::<u64>(),
        tolerance in any::<u64>(),
    ) {
        let secret = WebhookSecret::new("whsec_test_secret").map_err(|e| TestCaseError::fail(e.to_string()))?;
        let _ = verify_stripe(Some(&header), &payload, &[secret], now, tolerance);
    }

    #[test]
    fn stripe_signatures_verify_only_unaltered(
        payload in proptest::collection::vec(any::<u8>(), 0..200),
        timestamp in 1_000_000_000u64..4_000_000_000,
        flip in any::<prop::sample::Index>(),
    ) {
        let secret = WebhookSecret::new("whsec_test_secret").map_err(|e| TestCaseError::fail(e.to_string()))?;
        let header = sign_stripe(&payload, &secret, timestamp);
        let secrets = [secret];
        prop_assert_eq!(verify_stripe(Some(header.as_bytes()), &payload, &secrets, timestamp, 300), Ok(timestamp));
        // Any one character of the signature changed: refused.
        let start = header.find("v1=").map_or(0, |i| i + 3);
        let mut altered = header.clone().into_bytes();
        let at = start + flip.index(altered.len() - start);
        altered[at] = if altered[at] == b'0' { b'1' } else { b'0' };
        prop_assert!(verify_stripe(Some(&altered), &payload, &secrets, timestamp, 300).is_err());
    }

    #[test]
    fn api_versions_read_back(text in "\\PC{0,40}") {
        if let Ok(version) = ApiVersion::parse(&text) {
            prop_assert_eq!(ApiVersion::parse(&version.to_string()), Ok(version));
        }
    }

    #[test]
    fn quotas_parse_anything_without_panicking(text in "\\PC{0,40}") {
        let _ = Quota::from_str(&text);
    }

    /// A quota is refused exactly outside its documented bounds: at most one unit per
    /// microsecond, and count x period under 2^50 microseconds.
    #[test]
    fn quotas_are_accepted_exactly_within_their_bounds(
        count in prop_oneof![1u32..=2_000, 1u32..=2_000_000, any::<u32>()],
        unit in prop::sample::select(vec![("ms", 1_000u64), ("s", 1_000_000), ("min", 60_000_000), ("h", 3_600_000_000), ("d", 86_400_000_000)]),
    ) {
        let (name, period_us) = unit;
        let text = format!("{count}/{name}");
        let within = count >= 1
            && u64::from(count) <= period_us
            && u128::from(count) * u128::from(period_us) < 1u128 << 50;
        prop_assert_eq!(Quota::from_str(&text).is_ok(), within, "{}", text);
    }
}

/// The stack of `tests/data/hostile_stack.toml`, which the fuzz targets also drive.
fn app() -> Router {
    let config: StackConfig = toml::from_str(include_str!("data/hostile_stack.toml"))
        .unwrap_or_else(|e| panic!("the configuration parses: {e}"));
    let stack = config
        .build(&MemoryBackend::new())
        .unwrap_or_else(|e| panic!("the configuration builds: {e}"));
    Router::new()
        .route("/things", get(|| async { "things" }))
        .layer(stack)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn hostile_request_headers_get_a_2xx_or_a_4xx(
        authorization in header_bytes(),
        accept in header_bytes(),
        version in header_bytes(),
        token_suffix in proptest::option::of("[A-Za-z0-9_.=-]{0,20}"),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mut request = Request::get("/things");
        // Half the time a real token, damaged at its end.
        let authorization = match token_suffix {
            Some(suffix) => format!(
                "Bearer {}{suffix}",
                hs256_token(DEMO_SECRET, DEMO_ISSUER, DEMO_AUDIENCE, "u_1", "user")
            )
            .into_bytes(),
            None => authorization,
        };
        for (name, bytes) in [
            (http::header::AUTHORIZATION, &authorization),
            (http::header::ACCEPT, &accept),
            (HeaderName::from_static("api-version"), &version),
        ] {
            if let Some(value) = header_value(bytes) {
                request = request.header(name, value);
            }
        }
        let request = request.body(Body::empty()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let answer = runtime.block_on(common::answer(&app(), request));
        prop_assert!(
            answer.status.is_success() || answer.status.is_client_error(),
            "{} {}",
            answer.status,
            answer.body
        );
    }
}
