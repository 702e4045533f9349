//! The response future the policy layers share: answer at once, or wait for a check (a store,
//! a key fetch), then call the inner service and stamp its response.

use std::future::Future;
use std::mem;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_service::Service;

use crate::body::PolicyBody;

/// A check's future; boxed because a store's or a fetch's future type cannot be named.
pub(crate) type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// A layer's decision once its check has answered, and what it adds to the inner response.
pub(crate) trait Gate: Sized {
    /// What the check answers.
    type Verdict;
    /// What is written on the inner service's response (headers, extensions).
    type Stamp;

    /// The next step once the check has answered: call `inner`, or answer without it.
    fn admit<S, ReqBody, B>(
        self,
        verdict: Self::Verdict,
        inner: &mut S,
        request: Request<ReqBody>,
    ) -> Step<S, ReqBody, B, Self>
    where
        S: Service<Request<ReqBody>>;

    /// Writes the stamp on the inner service's response.
    fn stamp<B>(stamp: Self::Stamp, response: &mut Response<B>);
}

pin_project! {
    /// Where a request stands in a policy layer.
    #[project = StepProj]
    pub(crate) enum Step<S, ReqBody, B, G>
    where
        S: Service<Request<ReqBody>>,
        G: Gate,
    {
        // An answer known without the inner service.
        Ready { response: Option<Response<PolicyBody<B>>> },
        // Waiting for the check, holding the ready inner service and the request. Boxed: the
        // wait is the rarer path (a store across the network, a key fetch), and inline they
        // would make every request's future, waiting or not, as large as a request.
        Waiting {
            check: BoxFuture<G::Verdict>,
            pending: Option<Box<(S, Request<ReqBody>, G)>>,
        },
        // The inner service's future, and what to write on its response.
        Calling {
            #[pin]
            future: S::Future,
            stamp: Option<G::Stamp>,
        },
    }
}

impl<S, ReqBody, B, G> Step<S, ReqBody, B, G>
where
    S: Service<Request<ReqBody>>,
    G: Gate,
{
    /// An answer without the inner service.
    pub(crate) fn answer(response: Response<PolicyBody<B>>) -> Self {
        Self::Ready {
            response: Some(response),
        }
    }

    /// Calls the (ready) inner service now.
    #[inline]
    pub(crate) fn call(inner: &mut S, request: Request<ReqBody>, stamp: Option<G::Stamp>) -> Self {
        Self::Calling {
            future: inner.call(request),
            stamp,
        }
    }

    /// Waits for `check` before deciding. The ready instance is the one that must be called
    /// later, so it goes with the request and a fresh clone takes its place.
    pub(crate) fn wait(
        check: BoxFuture<G::Verdict>,
        inner: &mut S,
        request: Request<ReqBody>,
        gate: G,
    ) -> Self
    where
        S: Clone,
    {
        let clone = inner.clone();
        let ready = mem::replace(inner, clone);
        Self::Waiting {
            check,
            pending: Some(Box::new((ready, request, gate))),
        }
    }

    /// Drives the step to the response.
    pub(crate) fn poll_response(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Response<PolicyBody<B>>, S::Error>>
    where
        S: Service<Request<ReqBody>, Response = Response<B>>,
    {
        loop {
            let next = match self.as_mut().project() {
                StepProj::Ready { response } => {
                    // `None` only when polled again after completion.
                    return response
                        .take()
                        .map_or(Poll::Pending, |r| Poll::Ready(Ok(r)));
                }
                StepProj::Calling { future, stamp } => {
                    let mut response = ready!(future.poll(cx))?;
                    if let Some(stamp) = stamp.take() {
                        G::stamp(stamp, &mut response);
                    }
                    return Poll::Ready(Ok(response.map(PolicyBody::inner)));
                }
                StepProj::Waiting { check, pending } => {
                    let verdict = ready!(check.as_mut().poll(cx));
                    let Some(pending) = pending.take() else {
                        return Poll::Pending;
                    };
                    let (mut inner, request, gate) = *pending;
                    gate.admit(verdict, &mut inner, request)
                }
            };
            self.set(next);
        }
    }
}
