//! Finding the bearer token in a request (RFC 6750 section 2): the `Authorization` header, or a
//! named cookie when configured. The query string is never read: URLs end up in logs.

use http::HeaderMap;
use http::header::{AUTHORIZATION, COOKIE};

/// What the request carries.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Found<'a> {
    /// Bearer credentials, not yet checked to be a well-formed token: a cached token is found by
    /// its digest before any byte of it is examined (see [`TokenSource::validate`]).
    Token(&'a [u8]),
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
    /// The bearer credentials of a request. The header wins over the cookie: a browser sends its
    /// cookies on every request, so a cookie beside an explicit header is not a second method.
    pub(crate) fn find<'a>(&self, headers: &'a HeaderMap) -> Found<'a> {
        let mut values = headers.get_all(AUTHORIZATION).iter();
        if let Some(value) = values.next() {
            if values.next().is_some() {
                return Found::Malformed("The request has more than one Authorization header.");
            }
            let value = value.as_bytes();
            let (scheme, rest) = match value.iter().position(|&b| b == b' ') {
                Some(space) => (&value[..space], &value[space + 1..]),
                None => (value, &[][..]),
            };
            if scheme.eq_ignore_ascii_case(b"bearer") {
                let start = rest.iter().position(|&b| b != b' ').unwrap_or(rest.len());
                return self.bounded(&rest[start..]);
            }
            if self.cookie.is_none() {
                return Found::Missing;
            }
        }
        match &self.cookie {
            Some(name) => match cookie(headers, name) {
                Some(token) => self.bounded(token.as_bytes()),
                None => Found::Missing,
            },
            None => Found::Missing,
        }
    }

    fn bounded<'a>(&self, token: &'a [u8]) -> Found<'a> {
        if token.is_empty() {
            Found::Malformed("The bearer token is empty.")
        } else if token.len() > self.max_len {
            Found::Malformed("The bearer token is too long.")
        } else {
            Found::Token(token)
        }
    }

    /// The token as text, if it is a well-formed `token68` (RFC 9110 section 11.2:
    /// `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`).
    pub(crate) fn validate(token: &[u8]) -> Result<&str, &'static str> {
        let body_len = token.len() - token.iter().rev().take_while(|&&b| b == b'=').count();
        if body_len == 0 || !token[..body_len].iter().all(|&b| TOKEN68[usize::from(b)]) {
            return Err("The bearer token has characters a token cannot contain.");
        }
        std::str::from_utf8(token).map_err(|_| "The bearer token is not ASCII.")
    }
}

/// The bytes `token68` allows before its `=` padding; one table lookup per byte.
static TOKEN68: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] =
            c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~' | b'+' | b'/');
        b += 1;
    }
    table
};

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

    /// What the layer makes of the credentials: the token, nothing, or why not.
    fn read(source: &TokenSource, map: &HeaderMap) -> Result<Option<String>, &'static str> {
        match source.find(map) {
            Found::Token(raw) => TokenSource::validate(raw).map(|t| Some(t.to_string())),
            Found::Missing => Ok(None),
            Found::Malformed(why) => Err(why),
        }
    }

    fn authorization(value: &str) -> Result<Option<String>, &'static str> {
        read(&HEADER_ONLY, &headers(&[("authorization", value)]))
    }

    #[test]
    fn bearer_headers_are_read_in_any_case_and_other_schemes_are_missing() {
        assert_eq!(authorization("Bearer a.b.c"), Ok(Some("a.b.c".into())));
        assert_eq!(authorization("bearer   a.b.c"), Ok(Some("a.b.c".into())));
        assert_eq!(authorization("BEARER abc=="), Ok(Some("abc==".into())));
        assert_eq!(authorization("Basic dTpw"), Ok(None));
        assert_eq!(read(&HEADER_ONLY, &HeaderMap::new()), Ok(None));
    }

    #[test]
    fn malformed_bearer_credentials_are_invalid_requests() {
        let long = format!("Bearer {}", "a".repeat(65));
        for value in [
            "Bearer",
            "Bearer ",
            "Bearer a b",
            "Bearer a\"b",
            "Bearer ===",
            "Bearer a=b",
            &long,
        ] {
            assert!(authorization(value).is_err(), "{value}");
        }
        let twice = headers(&[("authorization", "Bearer a"), ("authorization", "Bearer b")]);
        assert!(read(&HEADER_ONLY, &twice).is_err());
        let mut binary = HeaderMap::new();
        binary.insert(
            AUTHORIZATION,
            http::HeaderValue::from_bytes(b"Bearer ab\xff").unwrap(),
        );
        assert!(read(&HEADER_ONLY, &binary).is_err());
    }

    #[test]
    fn a_cookie_is_read_only_when_named_and_the_header_wins() {
        let source = TokenSource {
            cookie: Some("session".into()),
            max_len: 64,
        };
        let jar = headers(&[("cookie", "theme=dark; session=x.y.z")]);
        assert_eq!(read(&source, &jar), Ok(Some("x.y.z".into())));
        assert_eq!(read(&HEADER_ONLY, &jar), Ok(None));
        let both = headers(&[
            ("cookie", "session=x.y.z"),
            ("authorization", "Bearer h.e.d"),
        ]);
        assert_eq!(read(&source, &both), Ok(Some("h.e.d".into())));
        let basic = headers(&[("cookie", "session=x.y.z"), ("authorization", "Basic dTpw")]);
        assert_eq!(read(&source, &basic), Ok(Some("x.y.z".into())));
        assert!(read(&source, &headers(&[("cookie", "session=a b")])).is_err());
    }
}
