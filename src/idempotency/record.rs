//! What a finished request leaves for its retries: the response, or only its status when the
//! response could not be kept.

use bytes::Bytes;
use http::header::{self, HeaderName};
use http::{HeaderMap, StatusCode};

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
