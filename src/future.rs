//! [`ResponseFuture`]: the response future of the layers that work in several steps.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::Response;
use pin_project_lite::pin_project;

use crate::body::PolicyBody;
use crate::gate::BoxFuture;
use crate::rejection::{Rejection, RejectionContext, SharedRenderer};

pin_project! {
    /// The response future of the layers whose work awaits several steps (idempotency,
    /// webhooks, conditional requests): a request the layer lets pass goes straight to the inner
    /// service; one it answers itself is ready; one it works on is a boxed future, since it
    /// awaits bodies, stores and the inner service in turn.
    #[project = ResponseFutureProj]
    #[allow(missing_docs)] // pin-project-lite takes no doc comment on a pinned field
    pub enum ResponseFuture<F, B, E> {
        /// Passed through: the inner service's future.
        Passing { #[pin] future: F },
        /// Answered by the layer (a bad header, an oversized body).
        Answered { response: Option<Response<PolicyBody<B>>> },
        /// Worked on by the layer.
        Working { future: BoxFuture<Result<Response<PolicyBody<B>>, E>> },
    }
}

impl<F, B, E> Future for ResponseFuture<F, B, E>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<PolicyBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            ResponseFutureProj::Passing { future } => future
                .poll(cx)
                .map(|r| r.map(|response| response.map(PolicyBody::inner))),
            ResponseFutureProj::Answered { response } => response
                .take()
                .map_or(Poll::Pending, |r| Poll::Ready(Ok(r))),
            ResponseFutureProj::Working { future } => future.as_mut().poll(cx),
        }
    }
}

impl<F, B, E> ResponseFuture<F, B, E> {
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
