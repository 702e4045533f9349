//! [`HeaderRoom`]: room made once, next to the service, for the header fields the stack's layers
//! add to its answers.
//!
//! A handler's answer carries a few fields, and the header map grows as the layers above it add
//! theirs: a rate limit adds six, versioning a few, conditional requests two or three, audit one.
//! Grown one layer at a time, the map rehashes and copies itself twice on the way out; reserved
//! once where the answer is made, it grows once.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_service::Service;

/// How many header fields each slot's layer may add to an answer it lets through, outer to inner
/// (audit, auth, rate limit, versioning, idempotency, conditional), each counted beside the code
/// that writes them. Refusals are fresh answers and need no room here.
pub(crate) const SLOT_FIELDS: [usize; 6] = [
    crate::audit::ANSWER_FIELDS,
    0,
    crate::rate_limit::ANSWER_FIELDS,
    crate::versioning::ANSWER_FIELDS,
    0,
    crate::conditional::ANSWER_FIELDS,
];

/// The service under the innermost slot of a [`PolicyStack`](super::PolicyStack): reserves room
/// in its answer's header map for the fields the stack's layers add.
#[derive(Debug, Clone)]
pub struct HeaderRoom<S> {
    inner: S,
    fields: usize,
}

impl<S> HeaderRoom<S> {
    pub(crate) fn new(inner: S, fields: usize) -> Self {
        Self { inner, fields }
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for HeaderRoom<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = HeaderRoomFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        HeaderRoomFuture {
            future: self.inner.call(request),
            fields: self.fields,
        }
    }
}

pin_project! {
    /// The response future of [`HeaderRoom`].
    pub struct HeaderRoomFuture<F> {
        #[pin]
        future: F,
        fields: usize,
    }
}

impl<F, B, E> Future for HeaderRoomFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = ready!(this.future.poll(cx))?;
        if *this.fields > 0 {
            response.headers_mut().reserve(*this.fields);
        }
        Poll::Ready(Ok(response))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;

    #[tokio::test]
    async fn the_answer_has_room_for_the_fields_the_stack_adds() {
        let handler = tower::service_fn(|_: Request<()>| async {
            let mut response = Response::new(());
            response
                .headers_mut()
                .insert("content-type", "text/plain".parse().unwrap());
            Ok::<_, Infallible>(response)
        });
        let fields: usize = SLOT_FIELDS.iter().sum();
        let mut room = HeaderRoom::new(handler, fields);
        let response = room.call(Request::new(())).await.unwrap();
        let headers = response.headers();
        assert_eq!(headers.len(), 1, "the answer itself is unchanged");
        assert!(
            headers.capacity() >= headers.len() + fields,
            "capacity {} leaves no room for {fields} more",
            headers.capacity()
        );
    }
}
