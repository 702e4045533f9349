//! [`ResponseFuture`]: the conditional-request service's answer.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::Response;
use http_body::Body;
use pin_project_lite::pin_project;

use super::service::{Judging, Read};
use super::store::ValidatorStore;
use crate::body::PolicyBody;
use crate::buffer::BoxError;
use crate::gate::BoxFuture;
use crate::rejection::{Rejection, RejectionContext, SharedRenderer};

pin_project! {
    /// The response future of [`Conditional`](super::Conditional).
    ///
    /// A read whose validators the store knew at once waits for the handler in place; only
    /// its answer's digest and judgement go on in a boxed future. Updates, and reads that wait
    /// for the store, are boxed futures throughout: they await the store and the handler in
    /// turn.
    #[project = ResponseFutureProj]
    #[allow(missing_docs)] // pin-project-lite takes no doc comment on a pinned field
    pub enum ResponseFuture<F, B, E, St>
    where
        St: ValidatorStore,
    {
        /// Passed through: the inner service's future.
        Passing { #[pin] future: F },
        /// Answered by the layer (a malformed precondition, a 304 from known validators).
        Answered { response: Option<Response<PolicyBody<B>>> },
        /// A read waiting for the handler, with what judging its answer needs.
        Reading { #[pin] future: F, read: Option<Read<St>> },
        /// A read's answer being digested and judged.
        Judging { future: Judging<B> },
        /// Worked on by the layer.
        Working { future: BoxFuture<Result<Response<PolicyBody<B>>, E>> },
    }
}

impl<F, B, E, St: ValidatorStore> ResponseFuture<F, B, E, St> {
    pub(crate) fn answered(response: Response<PolicyBody<B>>) -> Self {
        Self::Answered {
            response: Some(response),
        }
    }

    /// The layer's refusal of `request`, rendered.
    pub(crate) fn refused<ReqBody>(
        renderer: &SharedRenderer,
        rejection: Rejection,
        request: &http::Request<ReqBody>,
    ) -> Self {
        Self::answered(renderer.respond(rejection, &RejectionContext::of(request)))
    }
}

impl<F, B, E, St> Future for ResponseFuture<F, B, E, St>
where
    F: Future<Output = Result<Response<B>, E>>,
    St: ValidatorStore,
    B: Body<Data = bytes::Bytes> + Unpin + Send + 'static,
    B::Error: Into<BoxError>,
    E: Send + 'static,
{
    type Output = Result<Response<PolicyBody<B>>, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let judging = match self.as_mut().project() {
            ResponseFutureProj::Passing { future } => {
                return future
                    .poll(cx)
                    .map(|r| r.map(|response| response.map(PolicyBody::inner)));
            }
            ResponseFutureProj::Answered { response } => {
                // `None` only when polled again after completion.
                return response
                    .take()
                    .map_or(Poll::Pending, |r| Poll::Ready(Ok(r)));
            }
            ResponseFutureProj::Working { future } => return future.as_mut().poll(cx),
            ResponseFutureProj::Judging { future } => return future.as_mut().poll(cx).map(Ok),
            ResponseFutureProj::Reading { future, read } => {
                let response = ready!(future.poll(cx))?;
                let Some(read) = read.take() else {
                    return Poll::Pending;
                };
                match read.answered(response) {
                    Ok(done) => return Poll::Ready(Ok(done)),
                    Err(judging) => judging,
                }
            }
        };
        self.set(Self::Judging { future: judging });
        self.poll(cx)
    }
}
