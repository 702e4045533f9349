//! Reading bodies up to a limit: whole request bodies (fingerprints, signatures), and the start
//! of response bodies (to keep or digest them) without losing what could not be read.

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http_body::Body;
use http_body_util::BodyExt;

/// An error of a body, boxed.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What reading a body up to a limit found.
pub(crate) enum Collected<B> {
    /// The whole body, within the limit and without trailers.
    Whole(Bytes),
    /// Reading stopped (the body is over the limit, or it ended with trailers): what was read,
    /// then the rest, to send on unchanged.
    Partial {
        head: Bytes,
        trailers: Option<HeaderMap>,
        rest: B,
    },
    /// The body failed.
    Failed(BoxError),
}

/// Reads `body` while it fits in `limit` bytes.
pub(crate) async fn collect<B>(mut body: B, limit: usize) -> Collected<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    if body.size_hint().lower() > limit as u64 {
        return Collected::Partial {
            head: Bytes::new(),
            trailers: None,
            rest: body,
        };
    }
    let mut first: Option<Bytes> = None;
    let mut more = BytesMut::new();
    let head = |first: Option<Bytes>, more: BytesMut| match first {
        Some(f) if more.is_empty() => f,
        Some(f) => {
            let mut all = BytesMut::with_capacity(f.len() + more.len());
            all.extend_from_slice(&f);
            all.extend_from_slice(&more);
            all.freeze()
        }
        None => Bytes::new(),
    };
    let mut read = 0usize;
    loop {
        let frame = match body.frame().await {
            None => return Collected::Whole(head(first, more)),
            Some(Err(error)) => return Collected::Failed(error.into()),
            Some(Ok(frame)) => frame,
        };
        match frame.into_data() {
            Ok(data) => {
                read = read.saturating_add(data.len());
                if first.is_none() {
                    first = Some(data);
                } else {
                    more.extend_from_slice(&data);
                }
                if read > limit {
                    return Collected::Partial {
                        head: head(first, more),
                        trailers: None,
                        rest: body,
                    };
                }
            }
            Err(frame) => {
                // Trailers end the body; a replay could not carry them faithfully.
                return Collected::Partial {
                    head: head(first, more),
                    trailers: frame.into_trailers().ok(),
                    rest: body,
                };
            }
        }
    }
}

/// Why a request body could not be read.
pub(crate) enum BodyRefusal {
    /// Longer than the limit.
    TooLarge,
    /// The body failed (the client went away, a malformed chunk).
    Unreadable(BoxError),
}

/// Reads a whole request body of at most `limit` bytes (checked against `Content-Length` first,
/// so an announced oversized body is refused before a byte of it is read).
pub(crate) async fn read_request<B>(
    headers: &HeaderMap,
    body: B,
    limit: usize,
) -> Result<Bytes, BodyRefusal>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    if announced_length(headers).is_some_and(|n| n > limit as u64) {
        return Err(BodyRefusal::TooLarge);
    }
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => Err(BodyRefusal::TooLarge),
        Err(error) => Err(BodyRefusal::Unreadable(error)),
    }
}

/// The request's `Content-Length`, if it has one that parses.
pub(crate) fn announced_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

impl BodyRefusal {
    /// The answer: 413 or 400.
    pub(crate) fn rejection(&self, limit: usize) -> crate::Rejection {
        match self {
            BodyRefusal::TooLarge => crate::Rejection::new(
                http::StatusCode::PAYLOAD_TOO_LARGE,
                "request_body_too_large",
                format!("The request body is larger than the {limit} bytes this endpoint reads."),
            ),
            BodyRefusal::Unreadable(error) => {
                tracing::debug!(%error, "request body unreadable");
                crate::Rejection::new(
                    http::StatusCode::BAD_REQUEST,
                    "request_body_unreadable",
                    "The request body could not be read to its end.",
                )
            }
        }
    }
}
