//! Conditional requests: RFC 9110 section 13.2.2 as a table, then the layer over axum.

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
