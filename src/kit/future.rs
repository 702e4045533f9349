//! [`PolicyFuture`]: the one response future every layer drives, and the two things a layer
//! plugs into it: a [`Gate`] (a check that answers before the inner service is called) and a
//! [`Finish`] (what is done with the inner service's answer).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_service::Service;

use super::take_ready;
use crate::body::PolicyBody;

/// A future that cannot be named (a store's, a key fetch's, a body's), boxed.
pub(crate) type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// A layer's answer: the response with the layer's body, or the inner service's error.
pub(crate) type Answer<B, E> = Result<Response<PolicyBody<B>>, E>;

/// A check a layer makes before the inner service is called (a store's decision, a token's
/// verification), and what it writes on the inner service's answer once it let the request in.
pub(crate) trait Gate: Sized {
    /// What the check answers.
    type Verdict;
    /// What is written on the inner service's response (headers, extensions).
    type Stamp;

    /// The next step once the check has answered: call `inner` (ready), or answer without it.
    fn admit<S, ReqBody, B, T>(
        self,
        verdict: Self::Verdict,
        inner: &mut S,
        request: Request<ReqBody>,
    ) -> PolicyFuture<S, ReqBody, B, Self, T>
    where
        S: Service<Request<ReqBody>>;

    /// Writes the stamp on the inner service's response.
    fn stamp<B>(stamp: Self::Stamp, response: &mut Response<B>);
}

/// What a layer does once the inner service has answered: the answer at once, or, when it must
/// wait (a record to write, a body to digest), a future of it.
pub(crate) trait Finish<B, E> {
    fn finish(
        self,
        outcome: Result<Response<B>, E>,
    ) -> Result<Answer<B, E>, BoxFuture<Answer<B, E>>>;
}

/// The [`Gate`] of layers that check nothing before the inner service, and the [`Finish`] of
/// layers that do nothing with its answer.
pub(crate) enum Nothing {}

impl Gate for Nothing {
    type Verdict = Infallible;
    type Stamp = Infallible;

    fn admit<S, ReqBody, B, T>(
        self,
        _: Infallible,
        _: &mut S,
        _: Request<ReqBody>,
    ) -> PolicyFuture<S, ReqBody, B, Self, T>
    where
        S: Service<Request<ReqBody>>,
    {
        match self {}
    }

    fn stamp<B>(stamp: Infallible, _: &mut Response<B>) {
        match stamp {}
    }
}

impl<B, E> Finish<B, E> for Nothing {
    fn finish(self, _: Result<Response<B>, E>) -> Result<Answer<B, E>, BoxFuture<Answer<B, E>>> {
        match self {}
    }
}

pin_project! {
    /// Where a request stands in a layer: answered by the layer, waiting for the layer's check
    /// (`G`), calling the inner service (and then finishing its answer with `T`), or worked on
    /// by the layer in a boxed future (a body to read, a store to wait for, in turn). Polled
    /// after it completed, it panics, as tower-http's futures do: where it holds the answer or
    /// the request itself, and otherwise as the inner or boxed future it polls again does.
    #[project = StateProj]
    pub(crate) enum PolicyFuture<S, ReqBody, B, G, T>
    where
        S: Service<Request<ReqBody>>,
        G: Gate,
    {
        Answered { response: Option<Response<PolicyBody<B>>> },
        // Waiting for the check, holding the ready inner service and the request. Boxed: the
        // wait is the rarer path (a store across the network, a key fetch), and inline they
        // would make every request's future, waiting or not, as large as a request.
        Checking {
            check: BoxFuture<G::Verdict>,
            pending: Option<Box<(S, Request<ReqBody>, G)>>,
        },
        // The inner service's future, what the gate writes on its answer, and what finishes it.
        Calling {
            #[pin]
            future: S::Future,
            stamp: Option<G::Stamp>,
            then: Option<T>,
        },
        Working { future: BoxFuture<Answer<B, S::Error>> },
    }
}

impl<S, ReqBody, B, G, T> PolicyFuture<S, ReqBody, B, G, T>
where
    S: Service<Request<ReqBody>>,
    G: Gate,
{
    /// An answer without the inner service.
    pub(crate) fn answer(response: Response<PolicyBody<B>>) -> Self {
        Self::Answered {
            response: Some(response),
        }
    }

    /// Calls the (ready) inner service now; `stamp` is written on its answer.
    #[inline]
    pub(crate) fn call(inner: &mut S, request: Request<ReqBody>, stamp: Option<G::Stamp>) -> Self {
        Self::Calling {
            future: inner.call(request),
            stamp,
            then: None,
        }
    }

    /// Waits for `check` before `gate` decides. The ready instance is the one that must be
    /// called later, so it goes with the request.
    pub(crate) fn check(
        check: BoxFuture<G::Verdict>,
        inner: &mut S,
        request: Request<ReqBody>,
        gate: G,
    ) -> Self
    where
        S: Clone,
    {
        Self::Checking {
            check,
            pending: Some(Box::new((take_ready(inner), request, gate))),
        }
    }

    /// The layer's refusal of `request`, rendered.
    pub(crate) fn refused(
        renderer: &crate::rejection::SharedRenderer,
        rejection: crate::rejection::Rejection,
        request: &Request<ReqBody>,
    ) -> Self {
        Self::answer(renderer.respond(rejection, &crate::rejection::RejectionContext::of(request)))
    }

    /// The layer's own work, boxed.
    pub(crate) fn working(future: BoxFuture<Answer<B, S::Error>>) -> Self {
        Self::Working { future }
    }
}

impl<S, ReqBody, B, G, T> Future for PolicyFuture<S, ReqBody, B, G, T>
where
    S: Service<Request<ReqBody>, Response = Response<B>>,
    G: Gate,
    T: Finish<B, S::Error>,
{
    type Output = Answer<B, S::Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let next = match self.as_mut().project() {
                StateProj::Answered { response } => {
                    return Poll::Ready(Ok(response.take().unwrap_or_else(|| completed())));
                }
                StateProj::Calling {
                    future,
                    stamp,
                    then,
                } => {
                    let mut outcome = ready!(future.poll(cx));
                    if let (Some(stamp), Ok(response)) = (stamp.take(), outcome.as_mut()) {
                        G::stamp(stamp, response);
                    }
                    match then.take() {
                        None => return Poll::Ready(outcome.map(|r| r.map(PolicyBody::inner))),
                        Some(then) => match then.finish(outcome) {
                            Ok(answer) => return Poll::Ready(answer),
                            Err(waiting) => Self::Working { future: waiting },
                        },
                    }
                }
                StateProj::Working { future } => return future.as_mut().poll(cx),
                StateProj::Checking { check, pending } => {
                    let verdict = ready!(check.as_mut().poll(cx));
                    let Some(pending) = pending.take() else {
                        completed()
                    };
                    let (mut inner, request, gate) = *pending;
                    gate.admit(verdict, &mut inner, request)
                }
            };
            self.set(next);
        }
    }
}

/// A future polled after it completed: a bug of its caller, as for any future.
#[cold]
#[track_caller]
fn completed() -> ! {
    panic!("a policy layer's response future was polled after it completed")
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::future::Future;
    use std::task::{Context, Poll, Waker};

    use http::{Request, Response};

    use super::{Nothing, PolicyFuture};
    use crate::body::PolicyBody;

    type Handler = tower::util::ServiceFn<
        fn(Request<()>) -> std::future::Ready<Result<Response<()>, Infallible>>,
    >;

    fn handler() -> Handler {
        tower::service_fn(|_| std::future::ready(Ok(Response::new(()))))
    }

    #[test]
    #[should_panic(expected = "polled after it completed")]
    fn a_future_polled_after_it_completed_panics() {
        let future: PolicyFuture<Handler, (), (), Nothing, Nothing> =
            PolicyFuture::answer(Response::new(PolicyBody::full("no")));
        let mut cx = Context::from_waker(Waker::noop());
        let mut future = std::pin::pin!(future);
        assert!(matches!(future.as_mut().poll(&mut cx), Poll::Ready(Ok(_))));
        let _ = future.as_mut().poll(&mut cx);
    }

    #[test]
    fn a_call_answers_once_with_the_inner_answer() {
        let mut inner = handler();
        let future: PolicyFuture<Handler, (), (), Nothing, Nothing> =
            PolicyFuture::call(&mut inner, Request::new(()), None);
        let mut cx = Context::from_waker(Waker::noop());
        let mut future = std::pin::pin!(future);
        assert!(matches!(future.as_mut().poll(&mut cx), Poll::Ready(Ok(_))));
    }
}
