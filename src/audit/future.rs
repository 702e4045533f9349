//! [`ResponseFuture`]: the audit service's answer, recorded as it comes in.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::Response;
use pin_project_lite::pin_project;

use super::service::Recording;
use super::sink::AuditSink;
use crate::body::PolicyBody;
use crate::gate::BoxFuture;

pin_project! {
    /// The response future of [`Audit`](super::Audit).
    ///
    /// A recorded request waits for the inner service's answer in place, and its record joins
    /// the queue as soon as the answer is in: no allocation of its own on the way. Only a record
    /// that must wait (a fail-closed write, a full queue under back-pressure) goes on in a boxed
    /// future.
    #[project = ResponseFutureProj]
    #[allow(missing_docs)] // pin-project-lite takes no doc comment on a pinned field
    pub enum ResponseFuture<F, B, E, Si>
    where
        Si: AuditSink,
    {
        /// Not a recorded route: the inner service's future.
        Passing { #[pin] future: F },
        /// Answered by the layer (a fail-closed refusal).
        Answered { response: Option<Response<PolicyBody<B>>> },
        /// Waiting for the inner service, with the record to finish when it answers.
        Recording { #[pin] future: F, recording: Option<Recording<Si>> },
        /// Waiting for the record to be written before the answer is released.
        Delivering { future: BoxFuture<Result<Response<PolicyBody<B>>, E>> },
    }
}

impl<F, B, E, Si: AuditSink> ResponseFuture<F, B, E, Si> {
    pub(crate) fn answered(response: Response<PolicyBody<B>>) -> Self {
        Self::Answered {
            response: Some(response),
        }
    }
}

impl<F, B, E, Si> Future for ResponseFuture<F, B, E, Si>
where
    F: Future<Output = Result<Response<B>, E>>,
    Si: AuditSink,
    B: Send + 'static,
    E: Send + 'static,
{
    type Output = Result<Response<PolicyBody<B>>, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let delivering = match self.as_mut().project() {
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
            ResponseFutureProj::Delivering { future } => return future.as_mut().poll(cx),
            ResponseFutureProj::Recording { future, recording } => {
                let outcome = ready!(future.poll(cx));
                let Some(recording) = recording.take() else {
                    return Poll::Pending;
                };
                match recording.answered(outcome) {
                    Ok(done) => return Poll::Ready(done),
                    Err(waiting) => waiting,
                }
            }
        };
        self.set(Self::Delivering { future: delivering });
        self.poll(cx)
    }
}
