//! [`PolicyBody`]: the response body of every layer in this crate.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

pin_project! {
    /// Either the inner service's body, passed through untouched (streaming stays streaming), or
    /// bytes a layer produced (a rejection, a replay).
    #[project = PolicyBodyProj]
    #[derive(Debug)]
    #[allow(missing_docs)] // pin-project-lite takes no doc comment on a pinned field

    pub enum PolicyBody<B> {
        /// The inner service's body.
        Inner {
            #[pin]
            body: B,
        },
        /// Bytes produced by a layer; `None` once sent.
        Full {
            data: Option<Bytes>,
        },
        /// The inner service's body after a layer read its start (looking for its end, up to a
        /// limit): those bytes, then any trailers read, then the rest of the body.
        Resumed {
            // Boxed: every layer nests a `PolicyBody`, and answers move through each level, so
            // each level adds a pointer to the size, not the read-ahead.
            read: Option<Box<ReadAhead>>,
            #[pin]
            rest: B,
        },
    }
}

/// What a layer read of a body before handing the rest on: its first bytes, and the trailers
/// when the body ended there.
#[derive(Debug)]
pub struct ReadAhead {
    head: Option<Bytes>,
    trailers: Option<HeaderMap>,
}

impl<B> PolicyBody<B> {
    /// Wraps the inner service's body.
    pub fn inner(body: B) -> Self {
        Self::Inner { body }
    }

    /// A complete body of these bytes.
    pub fn full(data: impl Into<Bytes>) -> Self {
        let data: Bytes = data.into();
        Self::Full {
            data: (!data.is_empty()).then_some(data),
        }
    }

    /// The inner body, `head` having been read from it already (and its `trailers`, which end it).
    pub fn resumed(head: Bytes, trailers: Option<HeaderMap>, rest: B) -> Self {
        let head = (!head.is_empty()).then_some(head);
        Self::Resumed {
            read: (head.is_some() || trailers.is_some())
                .then(|| Box::new(ReadAhead { head, trailers })),
            rest,
        }
    }

    /// An empty body.
    pub fn empty() -> Self {
        Self::Full { data: None }
    }
}

impl<B> Body for PolicyBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.project() {
            PolicyBodyProj::Inner { body } => body.poll_frame(cx),
            PolicyBodyProj::Full { data } => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            PolicyBodyProj::Resumed { read, rest } => {
                if let Some(ahead) = read {
                    if let Some(head) = ahead.head.take() {
                        return Poll::Ready(Some(Ok(Frame::data(head))));
                    }
                    let trailers = ahead.trailers.take();
                    *read = None;
                    if let Some(trailers) = trailers {
                        return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
                    }
                }
                rest.poll_frame(cx)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Inner { body } => body.is_end_stream(),
            Self::Full { data } => data.is_none(),
            Self::Resumed { read, rest } => read.is_none() && rest.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Inner { body } => body.size_hint(),
            Self::Full { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            Self::Resumed { read, rest } => {
                let head = read
                    .as_ref()
                    .and_then(|r| r.head.as_ref())
                    .map_or(0, |d| d.len() as u64);
                let rest = rest.size_hint();
                let mut hint = SizeHint::new();
                hint.set_lower(rest.lower().saturating_add(head));
                if let Some(upper) = rest.upper() {
                    hint.set_upper(upper.saturating_add(head));
                }
                hint
            }
        }
    }
}
