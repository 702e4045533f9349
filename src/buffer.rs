//! Reading bodies up to a limit: whole request bodies (fingerprints, signatures), and the start
//! of response bodies (to keep or digest them) without losing what could not be read.

use std::pin::Pin;
use std::task::{Context, Poll, Waker, ready};

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
pub(crate) async fn collect<B>(body: B, limit: usize) -> Collected<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    collect_rest(Reading::new(limit), body).await
}

/// What [`collect`] finds, when the body has every frame at hand now (a handler's buffered
/// answer), so the caller needs no future of its own; else what was read so far and the body,
/// for [`collect_rest`].
pub(crate) fn collect_now<B>(mut body: B, limit: usize) -> Result<Collected<B>, (Reading, B)>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    let mut reading = Reading::new(limit);
    // Nothing waits on this waker: a body that is not ready is polled again, with the task's
    // own, by `collect_rest`.
    let mut cx = Context::from_waker(Waker::noop());
    match reading.poll(&mut body, &mut cx) {
        Poll::Ready(end) => Ok(reading.finish(end, body)),
        Poll::Pending => Err((reading, body)),
    }
}

/// Goes on reading `body` from where `reading` stopped.
pub(crate) async fn collect_rest<B>(mut reading: Reading, mut body: B) -> Collected<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    let end = std::future::poll_fn(|cx| reading.poll(&mut body, cx)).await;
    reading.finish(end, body)
}

/// A body read so far, up to a limit.
pub(crate) struct Reading {
    first: Option<Bytes>,
    more: BytesMut,
    read: usize,
    limit: usize,
}

/// Why reading stopped.
enum End {
    Whole,
    /// Over the limit, or the body ended with trailers (these).
    Partial(Option<HeaderMap>),
    Failed(BoxError),
}

impl Reading {
    fn new(limit: usize) -> Self {
        Self {
            first: None,
            more: BytesMut::new(),
            read: 0,
            limit,
        }
    }

    /// Reads frames while the body has them ready.
    fn poll<B>(&mut self, body: &mut B, cx: &mut Context<'_>) -> Poll<End>
    where
        B: Body<Data = Bytes> + Unpin,
        B::Error: Into<BoxError>,
    {
        if self.first.is_none() && body.size_hint().lower() > self.limit as u64 {
            return Poll::Ready(End::Partial(None));
        }
        loop {
            let frame = match ready!(Pin::new(&mut *body).poll_frame(cx)) {
                None => return Poll::Ready(End::Whole),
                Some(Err(error)) => return Poll::Ready(End::Failed(error.into())),
                Some(Ok(frame)) => frame,
            };
            match frame.into_data() {
                Ok(data) => {
                    self.read = self.read.saturating_add(data.len());
                    if self.first.is_none() {
                        self.first = Some(data);
                    } else {
                        self.more.extend_from_slice(&data);
                    }
                    if self.read > self.limit {
                        return Poll::Ready(End::Partial(None));
                    }
                }
                // Trailers end the body; a replay could not carry them faithfully.
                Err(frame) => return Poll::Ready(End::Partial(frame.into_trailers().ok())),
            }
        }
    }

    fn finish<B>(self, end: End, rest: B) -> Collected<B> {
        let head = match self.first {
            Some(first) if self.more.is_empty() => first,
            Some(first) => {
                let mut all = BytesMut::with_capacity(first.len() + self.more.len());
                all.extend_from_slice(&first);
                all.extend_from_slice(&self.more);
                all.freeze()
            }
            None => Bytes::new(),
        };
        match end {
            End::Whole => Collected::Whole(head),
            End::Partial(trailers) => Collected::Partial {
                head,
                trailers,
                rest,
            },
            End::Failed(error) => Collected::Failed(error),
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

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::convert::Infallible;

    use http_body::Frame;
    use http_body_util::Full;

    use super::*;

    /// A body that answers its polls from a script: a frame, the end, or "not yet".
    struct Scripted(VecDeque<Poll<Option<Bytes>>>);

    impl Body for Scripted {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            match self.0.pop_front() {
                Some(Poll::Pending) => {
                    cx.waker().wake_by_ref();
                    Poll::Pending
                }
                Some(Poll::Ready(Some(data))) => Poll::Ready(Some(Ok(Frame::data(data)))),
                Some(Poll::Ready(None)) | None => Poll::Ready(None),
            }
        }
    }

    fn whole<B>(collected: Collected<B>) -> Bytes {
        match collected {
            Collected::Whole(bytes) => bytes,
            _ => panic!("expected the whole body"),
        }
    }

    #[test]
    fn a_buffered_body_is_read_without_waiting() {
        let Ok(collected) = collect_now(Full::new(Bytes::from_static(b"hello")), 64) else {
            panic!("a buffered body has every frame at hand");
        };
        assert_eq!(whole(collected), "hello");
    }

    #[test]
    fn a_buffered_body_over_the_limit_is_partial_and_loses_nothing() {
        let body = Full::new(Bytes::from_static(b"hello world"));
        match collect_now(body, 4) {
            Ok(Collected::Partial { head, rest, .. }) => {
                assert_eq!(head, "", "the size hint refuses it before a byte is read");
                assert_eq!(rest.size_hint().exact(), Some(11));
            }
            _ => panic!("expected a partial body"),
        }
    }

    #[tokio::test]
    async fn a_body_not_at_hand_is_read_on_from_where_it_stopped() {
        let body = Scripted(VecDeque::from([
            Poll::Ready(Some(Bytes::from_static(b"he"))),
            Poll::Pending,
            Poll::Ready(Some(Bytes::from_static(b"llo"))),
            Poll::Ready(None),
        ]));
        let Err((reading, body)) = collect_now(body, 64) else {
            panic!("the body was not ready");
        };
        assert_eq!(reading.read, 2, "the frame at hand was read");
        assert_eq!(whole(collect_rest(reading, body).await), "hello");
    }

    #[tokio::test]
    async fn collect_reads_past_a_wait() {
        let body = Scripted(VecDeque::from([
            Poll::Pending,
            Poll::Ready(Some(Bytes::from_static(b"a"))),
            Poll::Ready(Some(Bytes::from_static(b"b"))),
        ]));
        assert_eq!(whole(collect(body, 64).await), "ab");
    }
}
