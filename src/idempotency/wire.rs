//! How the Redis store writes an [`Outcome`]: status, headers and body in one string.

use bytes::{BufMut, Bytes, BytesMut};
use http::HeaderMap;
use http::StatusCode;
use http::header::{HeaderName, HeaderValue};

use super::record::{Outcome, StoredResponse};
use crate::error::StoreError;

/// The bytes the Redis store keeps: `R <status>\n`, one `name: value\n` per header, an empty
/// line, then the body; or `N <status>`. Header names and values never hold a newline, so the
/// layout is unambiguous.
pub(crate) fn encode(outcome: &Outcome) -> Vec<u8> {
    match outcome {
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

/// Reads [`encode`]'s output back.
pub(crate) fn decode(bytes: Bytes) -> Result<Outcome, StoreError> {
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
                let name =
                    HeaderName::from_bytes(&line[..colon]).map_err(|_| bad("bad header name"))?;
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
        assert_eq!(decode(encode(&outcome).into()).unwrap(), outcome);
        let empty = Outcome::Response(StoredResponse::new(
            StatusCode::NO_CONTENT,
            &HeaderMap::new(),
            Bytes::new(),
        ));
        assert_eq!(decode(encode(&empty).into()).unwrap(), empty);
        let not_kept = Outcome::NotKept {
            status: StatusCode::OK,
        };
        assert_eq!(decode(encode(&not_kept).into()).unwrap(), not_kept);
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
            assert!(decode(Bytes::copy_from_slice(raw)).is_err(), "{raw:?}");
        }
    }
}
