//! The policy kit: what every layer is built from. One response future ([`PolicyFuture`]) that
//! a layer drives through its states (answered, checking, calling, working), the two things a
//! layer plugs into it ([`Gate`], [`Finish`]), and the step every layer that calls its inner
//! service later takes: [`take_ready`].

mod failure;
mod future;

pub(crate) use failure::store_failed;
pub(crate) use future::{Answer, BoxFuture, Finish, Gate, Nothing, PolicyFuture};

/// The ready inner service, swapped for a clone: the instance `poll_ready` readied is the one
/// that must be called, later, in the future; the clone takes its place in the service
/// (tower's rule for services that call their inner service after `call` returns).
pub(crate) fn take_ready<S: Clone>(inner: &mut S) -> S {
    let clone = inner.clone();
    std::mem::replace(inner, clone)
}

/// A layer's named response future: an opaque wrapper of a [`PolicyFuture`], so the layer's
/// public future type names none of its private parts (tower-http's `opaque_future!`). The
/// first `where` holds the bounds the type needs, the second those under which it is a future
/// (its output is every layer's: the answer with a [`PolicyBody`](crate::body::PolicyBody), or
/// the inner service's error); `poll` forwards to the wrapped future.
macro_rules! policy_future {
    (
        $(#[$meta:meta])*
        pub struct $name:ident<$($param:ident),+> = $actual:ty;
        where [$($bounds:tt)+]
        polls where [$($poll_bounds:tt)+]
    ) => {
        pin_project_lite::pin_project! {
            $(#[$meta])*
            pub struct $name<$($param),+>
            where $($bounds)+
            {
                #[pin]
                inner: $actual,
            }
        }

        impl<$($param),+> $name<$($param),+>
        where $($bounds)+
        {
            #[inline]
            fn new(inner: $actual) -> Self {
                Self { inner }
            }
        }

        impl<$($param),+> std::fmt::Debug for $name<$($param),+>
        where $($bounds)+
        {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($name)).finish_non_exhaustive()
            }
        }

        impl<$($param),+> std::future::Future for $name<$($param),+>
        where $($poll_bounds)+
        {
            type Output = Result<http::Response<crate::body::PolicyBody<B>>, S::Error>;

            #[inline]
            fn poll(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<Self::Output> {
                self.project().inner.poll(cx)
            }
        }
    };
}
pub(crate) use policy_future;
