//! Finding the bearer token in a request (RFC 6750 section 2): the `Authorization` header, or a
//! named cookie when configured. The query string is never read: URLs end up in logs.

use http::HeaderMap;
use http::header::{AUTHORIZATION, COOKIE};

/// What the request carries.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Found<'a> {
    Token(&'a str),
    /// No bearer credentials: none at all, or another scheme (`Basic ...`), which RFC 6750
    /// section 3.1 answers without an error code.
    Missing,
    /// Bearer credentials that cannot be read: 400 `invalid_request`.
    Malformed(&'static str),
}

/// Where tokens are read from, and how long one may be.
#[derive(Debug, Clone)]
pub(crate) struct TokenSource {
    pub(crate) cookie: Option<Box<str>>,
    pub(crate) max_len: usize,
}

impl TokenSource {
    /// The bearer token of a request. The header wins over the cookie: a browser sends its
    /// cookies on every request, so a cookie beside an explicit header is not a second method.
    pub(crate) fn find<'a>(&self, headers: &'a HeaderMap) -> Found<'a> {
        let mut values = headers.get_all(AUTHORIZATION).iter();
        if let Some(value) = values.next() {
            if values.next().is_some() {
                return Found::Malformed("The request has more than one Authorization header.");
            }
            let Ok(value) = value.to_str() else {
                return Found::Malformed("The Authorization header is not visible ASCII.");
            };
            let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
            if scheme.eq_ignore_ascii_case("bearer") {
                return self.check(rest.trim_start_matches(' '));
            }
            if self.cookie.is_none() {
                return Found::Missing;
            }
        }
        match &self.cookie {
            Some(name) => match cookie(headers, name) {
                Some(token) => self.check(token),
                None => Found::Missing,
            },
            None => Found::Missing,
        }
    }

    fn check<'a>(&self, token: &'a str) -> Found<'a> {
        if token.is_empty() {
            return Found::Malformed("The bearer token is empty.");
        }
        if token.len() > self.max_len {
            return Found::Malformed("The bearer token is too long.");
        }
        if !is_token68(token) {
            return Found::Malformed("The bearer token has characters a token cannot contain.");
        }
        Found::Token(token)
    }
}

/// `token68` (RFC 9110 section 11.2): `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
fn is_token68(token: &str) -> bool {
    let body = token.trim_end_matches('=');
    !body.is_empty()
        && body.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
        })
}

/// The value of the first cookie called `name`, across every `Cookie` header.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, value)| value.trim_matches('"'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                http::HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    const HEADER_ONLY: TokenSource = TokenSource {
        cookie: None,
        max_len: 64,
    };

    #[test]
    fn bearer_headers_are_read_in_any_case_and_other_schemes_are_missing() {
        let find = |v: &str| {
            HEADER_ONLY
                .find(&headers(&[("authorization", v)]))
                .clone_str()
        };
        assert_eq!(find("Bearer a.b.c"), Some("a.b.c".into()));
        assert_eq!(find("bearer   a.b.c"), Some("a.b.c".into()));
        assert_eq!(find("BEARER abc=="), Some("abc==".into()));
        assert_eq!(
            HEADER_ONLY.find(&headers(&[("authorization", "Basic dTpw")])),
            Found::Missing
        );
        assert_eq!(HEADER_ONLY.find(&HeaderMap::new()), Found::Missing);
    }

    #[test]
    fn malformed_bearer_credentials_are_invalid_requests() {
        for value in [
            "Bearer",
            "Bearer ",
            "Bearer a b",
            "Bearer a\"b",
            "Bearer ===",
            "Bearer a=b",
        ] {
            let map = headers(&[("authorization", value)]);
            let found = HEADER_ONLY.find(&map);
            assert!(matches!(found, Found::Malformed(_)), "{value}: {found:?}");
        }
        let long = format!("Bearer {}", "a".repeat(65));
        assert!(matches!(
            HEADER_ONLY.find(&headers(&[("authorization", &long)])),
            Found::Malformed(_)
        ));
        let twice = headers(&[("authorization", "Bearer a"), ("authorization", "Bearer b")]);
        assert!(matches!(HEADER_ONLY.find(&twice), Found::Malformed(_)));
        let mut binary = HeaderMap::new();
        binary.insert(
            AUTHORIZATION,
            http::HeaderValue::from_bytes(b"Bearer \xff").unwrap(),
        );
        assert!(matches!(HEADER_ONLY.find(&binary), Found::Malformed(_)));
    }

    #[test]
    fn a_cookie_is_read_only_when_named_and_the_header_wins() {
        let source = TokenSource {
            cookie: Some("session".into()),
            max_len: 64,
        };
        let jar = headers(&[("cookie", "theme=dark; session=x.y.z")]);
        assert_eq!(source.find(&jar), Found::Token("x.y.z"));
        assert_eq!(HEADER_ONLY.find(&jar), Found::Missing);
        let both = headers(&[
            ("cookie", "session=x.y.z"),
            ("authorization", "Bearer h.e.d"),
        ]);
        assert_eq!(source.find(&both), Found::Token("h.e.d"));
        let basic = headers(&[("cookie", "session=x.y.z"), ("authorization", "Basic dTpw")]);
        assert_eq!(source.find(&basic), Found::Token("x.y.z"));
        let bad = headers(&[("cookie", "session=a b")]);
        assert!(matches!(source.find(&bad), Found::Malformed(_)));
    }

    impl Found<'_> {
        fn clone_str(&self) -> Option<String> {
            match self {
                Found::Token(t) => Some((*t).to_string()),
                _ => None,
            }
        }
    }
}
