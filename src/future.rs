//! [`ResponseFuture`]: the response future of the layers that work in several steps.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::Response;
use pin_project_lite::pin_project;

use crate::body::PolicyBody;
use crate::gate::BoxFuture;
use crate::rejection::{Rejection, RejectionContext, SharedRenderer};

/// A layer's answer: the response with the layer's body, or the inner service's error.
pub(crate) type Answer<B, E> = Result<Response<PolicyBody<B>>, E>;

/// What a layer does once the inner service has answered: the answer at once, or, when it must
/// wait (a record to write, a body to digest), a future of it.
pub(crate) trait Finish<B, E> {
    fn finish(
        self,
        outcome: Result<Response<B>, E>,
    ) -> Result<Answer<B, E>, BoxFuture<Answer<B, E>>>;
}

/// The [`Finish`] of layers whose work never waits for the inner answer in place.
pub enum NoFinish {}

impl<B, E> Finish<B, E> for NoFinish {
    fn finish(self, _: Result<Response<B>, E>) -> Result<Answer<B, E>, BoxFuture<Answer<B, E>>> {
        match self {}
    }
}

pin_project! {
    /// The response future of the layers whose work awaits several steps (audit, conditional
    /// requests, idempotency, webhooks): a request the layer lets pass goes straight to the
    /// inner service; one it answers itself is ready; one whose answer the layer finishes waits
    /// for the inner service in place and is finished when it answers (`T`); one it works on
    /// is a boxed future, since it awaits bodies, stores and the inner service in turn.
    #[project = ResponseFutureProj]
    #[allow(missing_docs)] // pin-project-lite takes no doc comment on a pinned field
    pub enum ResponseFuture<F, B, E, T = NoFinish> {
        /// Passed through: the inner service's future.
        Passing { #[pin] future: F },
        /// Answered by the layer (a bad header, an oversized body).
        Answered { response: Option<Response<PolicyBody<B>>> },
        /// The inner service's future, and what finishes its answer.
        Finishing { #[pin] future: F, then: Option<T> },
        /// Worked on by the layer.
        Working { future: BoxFuture<Answer<B, E>> },
    }
}

impl<F, B, E, T> Future for ResponseFuture<F, B, E, T>
where
    F: Future<Output = Result<Response<B>, E>>,
    T: Finish<B, E>,
{
    type Output = Answer<B, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let working = match self.as_mut().project() {
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
            ResponseFutureProj::Finishing { future, then } => {
                let outcome = ready!(future.poll(cx));
                let Some(then) = then.take() else {
                    return Poll::Pending;
                };
                match then.finish(outcome) {
                    Ok(answer) => return Poll::Ready(answer),
                    Err(waiting) => waiting,
                }
            }
        };
        self.set(Self::Working { future: working });
        self.poll(cx)
    }
}

impl<F, B, E, T> ResponseFuture<F, B, E, T> {
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
