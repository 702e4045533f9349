//! The `Idempotency-Key` header: 1 to 255 visible ASCII characters, bare (as Stripe sends it) or
//! as a structured-field string (`"abc"`, as the IETF draft writes it); both spell the same key.

use std::borrow::Cow;

/// The longest key accepted, in characters after unquoting.
pub const MAX_KEY_LEN: usize = 255;

/// Why an `Idempotency-Key` header was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The key is empty.
    #[error("the Idempotency-Key is empty")]
    Empty,
    /// The key is longer than [`MAX_KEY_LEN`].
    #[error("the Idempotency-Key is {0} characters long; at most 255 are allowed")]
    TooLong(usize),
    /// The key holds something other than visible ASCII, or a quoted key is not closed.
    #[error(
        "the Idempotency-Key may hold only visible ASCII characters, bare or in one pair of double quotes"
    )]
    Invalid,
    /// The request carries more than one `Idempotency-Key` header.
    #[error("the request carries more than one Idempotency-Key header")]
    Repeated,
}

/// Parses one `Idempotency-Key` value. A quoted value is unquoted (with `\"` and `\\` escapes),
/// so `"abc"` and `abc` are the same key.
///
/// ```
/// use api_policy::idempotency::{parse_key, KeyError};
/// assert_eq!(parse_key(b"order-123").unwrap(), "order-123");
/// assert_eq!(parse_key(b"\"order-123\"").unwrap(), "order-123");
/// assert_eq!(parse_key(b"two words"), Err(KeyError::Invalid));
/// ```
///
/// # Errors
/// A [`KeyError`] for an empty, overlong or non-visible-ASCII key.
pub fn parse_key(value: &[u8]) -> Result<Cow<'_, str>, KeyError> {
    let value = value.trim_ascii();
    let key: Cow<'_, [u8]> = match value {
        [b'"', inner @ .., b'"'] => unquote(inner)?,
        [b'"', ..] => return Err(KeyError::Invalid),
        bare => Cow::Borrowed(bare),
    };
    if key.is_empty() {
        return Err(KeyError::Empty);
    }
    if key.len() > MAX_KEY_LEN {
        return Err(KeyError::TooLong(key.len()));
    }
    if !key.iter().all(u8::is_ascii_graphic) {
        return Err(KeyError::Invalid);
    }
    Ok(match key {
        Cow::Borrowed(b) => Cow::Borrowed(std::str::from_utf8(b).map_err(|_| KeyError::Invalid)?),
        Cow::Owned(v) => Cow::Owned(String::from_utf8(v).map_err(|_| KeyError::Invalid)?),
    })
}

/// The inside of an RFC 8941 string: `\` escapes only `"` and `\`; a bare `"` ends the string,
/// so one inside is malformed.
fn unquote(inner: &[u8]) -> Result<Cow<'_, [u8]>, KeyError> {
    if !inner.contains(&b'\\') {
        return if inner.contains(&b'"') {
            Err(KeyError::Invalid)
        } else {
            Ok(Cow::Borrowed(inner))
        };
    }
    let mut out = Vec::with_capacity(inner.len());
    let mut bytes = inner.iter();
    while let Some(&b) = bytes.next() {
        match b {
            b'\\' => match bytes.next() {
                Some(&e @ (b'"' | b'\\')) => out.push(e),
                _ => return Err(KeyError::Invalid),
            },
            b'"' => return Err(KeyError::Invalid),
            b => out.push(b),
        }
    }
    Ok(Cow::Owned(out))
}

/// The request's key: `None` without the header, an error for a bad or repeated one.
pub(crate) fn from_headers(headers: &http::HeaderMap) -> Result<Option<Cow<'_, str>>, KeyError> {
    let mut values = headers.get_all(IDEMPOTENCY_KEY).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(KeyError::Repeated);
    }
    parse_key(first.as_bytes()).map(Some)
}

/// The request header that carries the key.
pub const IDEMPOTENCY_KEY: http::HeaderName = http::HeaderName::from_static("idempotency-key");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_and_quoted_keys_are_the_same_key() {
        for (raw, key) in [
            (&b"abc"[..], "abc"),
            (b"\"abc\"", "abc"),
            (
                b"  8e03978e-40d5-43e8-bc93-6894a57f9324 ",
                "8e03978e-40d5-43e8-bc93-6894a57f9324",
            ),
            (b"\"a\\\"b\\\\c\"", "a\"b\\c"),
            (b"a\"b", "a\"b"),
            (
                b"~!#$%&'()*+,-./:;<=>?@[]^_`{|}",
                "~!#$%&'()*+,-./:;<=>?@[]^_`{|}",
            ),
        ] {
            assert_eq!(parse_key(raw).as_deref(), Ok(key), "{raw:?}");
        }
    }

    #[test]
    fn bad_keys_are_refused_with_the_reason() {
        let long = "k".repeat(256);
        let quoted_max = format!("\"{}\"", "k".repeat(255));
        assert_eq!(parse_key(long.as_bytes()), Err(KeyError::TooLong(256)));
        assert_eq!(parse_key(&long.as_bytes()[..255]).map(|k| k.len()), Ok(255));
        assert_eq!(parse_key(quoted_max.as_bytes()).map(|k| k.len()), Ok(255));
        for (raw, error) in [
            (&b""[..], KeyError::Empty),
            (b"\"\"", KeyError::Empty),
            (b"   ", KeyError::Empty),
            (b"two words", KeyError::Invalid),
            (b"\"two words\"", KeyError::Invalid),
            (b"tab\there", KeyError::Invalid),
            (b"caf\xc3\xa9", KeyError::Invalid),
            (b"\"open", KeyError::Invalid),
            (b"\"a\"b\"", KeyError::Invalid),
            (b"\"bad\\escape\"", KeyError::Invalid),
            (b"\"trailing\\\"", KeyError::Invalid),
            (b"nul\x00", KeyError::Invalid),
        ] {
            assert_eq!(parse_key(raw), Err(error), "{raw:?}");
        }
    }

    #[test]
    fn a_repeated_header_is_refused() {
        let mut headers = http::HeaderMap::new();
        assert_eq!(from_headers(&headers), Ok(None));
        headers.append(IDEMPOTENCY_KEY, http::HeaderValue::from_static("a"));
        assert_eq!(from_headers(&headers).unwrap().as_deref(), Some("a"));
        headers.append(IDEMPOTENCY_KEY, http::HeaderValue::from_static("a"));
        assert_eq!(from_headers(&headers), Err(KeyError::Repeated));
    }
}
