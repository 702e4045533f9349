//! What a finished request leaves for its retries: the response, or only its status when the
//! response could not be kept.

use bytes::{BufMut, Bytes, BytesMut};
use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, StatusCode};

use crate::error::StoreError;

/// A response kept for replay: status, end-to-end headers and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    /// The status the handler answered.
    pub status: StatusCode,
    /// Its headers, less hop-by-hop ones, `Content-Length` and `Date` (which belong to each
    /// transmission, not to the response).
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
}

impl StoredResponse {
    /// Keeps what a replay needs of these response parts.
    #[must_use]
    pub fn new(status: StatusCode, headers: &HeaderMap, body: Bytes) -> Self {
        let mut kept = HeaderMap::with_capacity(headers.len());
        for (name, value) in headers {
            if is_kept(name, headers) {
                kept.append(name.clone(), value.clone());
            }
        }
        Self {
            status,
            headers: kept,
            body,
        }
    }
}

/// How a request with a key ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// The response, replayed to every retry.
    Response(StoredResponse),
    /// The handler answered with this status, but its response was not kept (larger than the
    /// storage limit, carrying trailers, or its body failed): retries learn the status and that
    /// the request ran, and the handler never runs again.
    NotKept {
        /// The handler's status.
        status: StatusCode,
    },
}

/// Headers that describe one transmission rather than the response (RFC 9110 section 7.6.1),
/// plus the ones named in `Connection`.
fn is_kept(name: &HeaderName, headers: &HeaderMap) -> bool {
    const HOP_BY_HOP: [&str; 5] = [
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
    ];
    if matches!(
        *name,
        header::CONNECTION
            | header::CONTENT_LENGTH
            | header::DATE
            | header::TRAILER
            | header::TRANSFER_ENCODING
            | header::UPGRADE
    ) || HOP_BY_HOP.contains(&name.as_str())
    {
        return false;
    }
    !headers.get_all(header::CONNECTION).iter().any(|v| {
        v.to_str().is_ok_and(|v| {
            v.split(',')
                .any(|token| token.trim().eq_ignore_ascii_case(name.as_str()))
        })
    })
}

impl Outcome {
    /// The bytes the Redis store keeps: `R <status>\n`, one `name: value\n` per header, an empty
    /// line, then the body; or `N <status>`. Header names and values never hold a newline, so the
    /// layout is unambiguous.
    pub(crate) fn encode(&self) -> Vec<u8> {
        match self {
            Outcome::NotKept { status } => format!("N {}", status.as_u16()).into_bytes(),
            Outcome::Response(r) => {
                let size = r.body.len()
                    + r.headers
                        .iter()
                        .map(|(n, v)| n.as_str().len() + v.len() + 3)
                        .sum::<usize>();
                let mut out = BytesMut::with_capacity(size + 8);
                out.put_slice(format!("R {}\n", r.status.as_u16()).as_bytes());
                for (name, value) in &r.headers {
                    out.put_slice(name.as_str().as_bytes());
                    out.put_slice(b": ");
                    out.put_slice(value.as_bytes());
                    out.put_u8(b'\n');
                }
                out.put_u8(b'\n');
                out.put_slice(&r.body);
                out.to_vec()
            }
        }
    }

    /// Reads [`encode`](Self::encode)'s output back.
    pub(crate) fn decode(bytes: Bytes) -> Result<Self, StoreError> {
        let bad = |what: &str| StoreError::Protocol(format!("idempotency record: {what}"));
        let line_end = |from: usize| {
            bytes[from..]
                .iter()
                .position(|&b| b == b'\n')
                .map(|p| from + p)
        };
        let status_at = |raw: &[u8]| {
            std::str::from_utf8(raw)
                .ok()
                .and_then(|s| s.parse::<u16>().ok())
                .and_then(|s| StatusCode::from_u16(s).ok())
                .ok_or_else(|| bad("bad status"))
        };
        match bytes.get(..2) {
            Some(b"N ") => Ok(Outcome::NotKept {
                status: status_at(&bytes[2..])?,
            }),
            Some(b"R ") => {
                let first = line_end(0).ok_or_else(|| bad("no status line"))?;
                let status = status_at(&bytes[2..first])?;
                let mut headers = HeaderMap::new();
                let mut at = first + 1;
                loop {
                    let end = line_end(at).ok_or_else(|| bad("unterminated headers"))?;
                    if end == at {
                        break;
                    }
                    let line = &bytes[at..end];
                    let colon = line
                        .windows(2)
                        .position(|w| w == b": ")
                        .ok_or_else(|| bad("header without `: `"))?;
                    let name = HeaderName::from_bytes(&line[..colon])
                        .map_err(|_| bad("bad header name"))?;
                    let value = HeaderValue::from_bytes(&line[colon + 2..])
                        .map_err(|_| bad("bad header value"))?;
                    headers.append(name, value);
                    at = end + 1;
                }
                Ok(Outcome::Response(StoredResponse {
                    status,
                    headers,
                    body: bytes.slice(at + 1..),
                }))
            }
            _ => Err(bad("unknown kind")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_round_trip_without_hop_by_hop_headers() {
        let mut headers = HeaderMap::new();
        for (n, v) in [
            ("content-type", "application/json"),
            ("location", "/api/v2/appointments/apt_9"),
            ("set-cookie", "a=1"),
            ("set-cookie", "b=2"),
            ("connection", "keep-alive, x-private"),
            ("x-private", "1"),
            ("keep-alive", "timeout=5"),
            ("transfer-encoding", "chunked"),
            ("content-length", "12"),
            ("date", "Tue, 24 Nov 2026 04:47:19 GMT"),
            ("x-binary", "caf\u{e9}"),
        ] {
            headers.append(
                HeaderName::from_static(n),
                HeaderValue::from_bytes(v.as_bytes()).unwrap(),
            );
        }
        let body = Bytes::from_static(b"{\"id\":\"apt_9\"}\n\n: tricky\nbody");
        let stored = StoredResponse::new(StatusCode::CREATED, &headers, body.clone());
        let names: Vec<&str> = stored.headers.keys().map(HeaderName::as_str).collect();
        assert_eq!(
            names,
            ["content-type", "location", "set-cookie", "x-binary"]
        );
        assert_eq!(stored.headers.get_all("set-cookie").iter().count(), 2);
        let outcome = Outcome::Response(stored);
        assert_eq!(Outcome::decode(outcome.encode().into()).unwrap(), outcome);
        let empty = Outcome::Response(StoredResponse::new(
            StatusCode::NO_CONTENT,
            &HeaderMap::new(),
            Bytes::new(),
        ));
        assert_eq!(Outcome::decode(empty.encode().into()).unwrap(), empty);
        let not_kept = Outcome::NotKept {
            status: StatusCode::OK,
        };
        assert_eq!(Outcome::decode(not_kept.encode().into()).unwrap(), not_kept);
    }

    #[test]
    fn garbage_is_a_protocol_error_not_a_panic() {
        for raw in [
            &b""[..],
            b"X",
            b"R ",
            b"R 200",
            b"R 99\n\n",
            b"R 200\nno-colon\n\n",
            b"R 200\nx: 1\n",
            b"N abc",
            b"R 200\nbad name: 1\n\n",
        ] {
            assert!(
                Outcome::decode(Bytes::copy_from_slice(raw)).is_err(),
                "{raw:?}"
            );
        }
    }
}
