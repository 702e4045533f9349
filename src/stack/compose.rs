//! [`PolicyStack`]: the six policy layers in the recommended order, each optional.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::room::{HeaderRoom, SLOT_FIELDS};
use crate::body::PolicyBody;
use crate::rejection::{RenderRejection, SharedRenderer, StackRenderer};

/// The response body of a service behind a [`PolicyStack`]: one [`PolicyBody`] level per slot,
/// whether the slot holds a layer or is skipped, so the type does not change with the
/// configuration.
pub type StackBody<B> = PolicyBody<PolicyBody<PolicyBody<PolicyBody<PolicyBody<PolicyBody<B>>>>>>;

/// The policy layers composed outer to inner as SEMANTICS.md recommends: audit, JWT auth, rate
/// limit, versioning, idempotency, conditional requests, then the service.
///
/// Each slot starts as [`Skip`] and takes a layer through its setter; the order never depends on
/// the order of the calls. Audit is outermost so it records the other layers' refusals; auth
/// runs before the limiter so the limiter counts principals and refused credentials spend no
/// quota; idempotency runs after both, so refused requests use up no key; conditional requests
/// sit next to the handler whose answers they digest.
///
/// ```
/// use api_policy::backend::MemoryBackend;
/// use api_policy::rate_limit::{MemoryRateLimitStore, Quota, RateLimitLayer, Unidentified};
/// use api_policy::stack::PolicyStack;
/// use http::{Request, Response, StatusCode};
/// use tower::{ServiceBuilder, ServiceExt};
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let backend = MemoryBackend::new();
/// let limits = RateLimitLayer::builder(MemoryRateLimitStore::new(&backend))
///     .tier("anonymous", Quota::per_minute(1))
///     .on_unidentified(Unidentified::SharedAnonymous)
///     .build()?;
/// // Only the rate limit: the other slots pass requests through.
/// let stack = PolicyStack::new().rate_limit(limits);
/// let service = ServiceBuilder::new().layer(stack).service_fn(|_req: Request<String>| async {
///     Ok::<_, std::convert::Infallible>(Response::new(String::from("hello")))
/// });
/// let first = service.clone().oneshot(Request::new(String::new())).await?;
/// assert_eq!(first.status(), StatusCode::OK);
/// assert_eq!(first.headers()["x-ratelimit-remaining"], "0");
/// let second = service.oneshot(Request::new(String::new())).await?;
/// assert_eq!(second.status(), StatusCode::TOO_MANY_REQUESTS);
/// # Ok::<_, Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct PolicyStack<A = Skip, J = Skip, R = Skip, V = Skip, I = Skip, C = Skip> {
    audit: A,
    auth: J,
    rate_limit: R,
    versioning: V,
    idempotency: I,
    conditional: C,
    /// Header fields each slot may add, by slot (see [`SLOT_FIELDS`]): none for a skipped one.
    room: [usize; 6],
    /// The renderer of every layer's refusals, unless the layer has its own.
    renderer: Option<StackRenderer>,
}

impl Default for PolicyStack {
    fn default() -> Self {
        Self::new()
    }
}

impl PolicyStack {
    /// A stack with every slot skipped: add the layers you want.
    pub fn new() -> Self {
        Self {
            audit: Skip,
            auth: Skip,
            rate_limit: Skip,
            versioning: Skip,
            idempotency: Skip,
            conditional: Skip,
            room: [0; 6],
            renderer: None,
        }
    }
}

/// A slot's setter: the stack with `layer` in the slot the setter names, every other slot as
/// it was, and room in the answers for the fields the slot's layer adds.
macro_rules! slot {
    ($(#[$doc:meta])* $slot:ident -> $out:ty, slot $index:expr) => {
        $(#[$doc])*
        pub fn $slot<L>(self, layer: L) -> $out {
            PolicyStack {
                audit: pick!($slot audit, self.audit, layer),
                auth: pick!($slot auth, self.auth, layer),
                rate_limit: pick!($slot rate_limit, self.rate_limit, layer),
                versioning: pick!($slot versioning, self.versioning, layer),
                idempotency: pick!($slot idempotency, self.idempotency, layer),
                conditional: pick!($slot conditional, self.conditional, layer),
                room: Self::room_with(self.room, $index),
                renderer: self.renderer,
            }
        }
    };
}

/// The new layer for the slot being set, the old one for every other.
macro_rules! pick {
    (audit audit, $old:expr, $new:expr) => {
        $new
    };
    (auth auth, $old:expr, $new:expr) => {
        $new
    };
    (rate_limit rate_limit, $old:expr, $new:expr) => {
        $new
    };
    (versioning versioning, $old:expr, $new:expr) => {
        $new
    };
    (idempotency idempotency, $old:expr, $new:expr) => {
        $new
    };
    (conditional conditional, $old:expr, $new:expr) => {
        $new
    };
    ($setting:ident $field:ident, $old:expr, $new:expr) => {
        $old
    };
}

impl<A, J, R, V, I, C> PolicyStack<A, J, R, V, I, C> {
    /// The room with slot `slot` holding a layer.
    fn room_with(room: [usize; 6], slot: usize) -> [usize; 6] {
        let mut room = room;
        room[slot] = SLOT_FIELDS[slot];
        room
    }

    slot! {
        /// The outermost slot: the PHI audit trail ([`crate::audit::AuditLayer`]).
        audit -> PolicyStack<L, J, R, V, I, C>, slot 0
    }
    slot! {
        /// The authentication slot (`auth::JwtAuthLayer`, feature `jwt`).
        auth -> PolicyStack<A, L, R, V, I, C>, slot 1
    }
    slot! {
        /// The rate-limit slot ([`crate::rate_limit::RateLimitLayer`]).
        rate_limit -> PolicyStack<A, J, L, V, I, C>, slot 2
    }
    slot! {
        /// The versioning and deprecation slot ([`crate::versioning::VersioningLayer`]).
        versioning -> PolicyStack<A, J, R, L, I, C>, slot 3
    }
    slot! {
        /// The idempotency-key slot ([`crate::idempotency::IdempotencyLayer`]).
        idempotency -> PolicyStack<A, J, R, V, L, C>, slot 4
    }
    slot! {
        /// The innermost slot: conditional requests ([`crate::conditional::ConditionalLayer`]).
        conditional -> PolicyStack<A, J, R, V, I, L>, slot 5
    }

    /// Renders every layer's refusals (problem+json by default) with `renderer`, unless the
    /// layer was given its own.
    pub fn renderer(mut self, renderer: impl RenderRejection) -> Self {
        self.renderer = Some(StackRenderer(SharedRenderer::new(renderer)));
        self
    }

    /// Room only for the slots that hold a layer: a [`Maybe`] slot left empty adds no field.
    pub(crate) fn room_only_for(mut self, held: [bool; 6]) -> Self {
        for (room, held) in self.room.iter_mut().zip(held) {
            if !held {
                *room = 0;
            }
        }
        self
    }

    /// How many header fields the stack makes room for in its answers.
    #[cfg(test)]
    pub(crate) fn room_fields(&self) -> usize {
        self.room.iter().sum()
    }

    /// The audit slot's layer.
    pub fn audit_layer(&self) -> &A {
        &self.audit
    }

    /// The auth slot's layer.
    pub fn auth_layer(&self) -> &J {
        &self.auth
    }

    /// The rate-limit slot's layer.
    pub fn rate_limit_layer(&self) -> &R {
        &self.rate_limit
    }

    /// The versioning slot's layer.
    pub fn versioning_layer(&self) -> &V {
        &self.versioning
    }

    /// The idempotency slot's layer.
    pub fn idempotency_layer(&self) -> &I {
        &self.idempotency
    }

    /// The conditional-requests slot's layer.
    pub fn conditional_layer(&self) -> &C {
        &self.conditional
    }
}

impl<S, A, J, R, V, I, C> Layer<S> for PolicyStack<A, J, R, V, I, C>
where
    C: Layer<HeaderRoom<S>>,
    I: Layer<C::Service>,
    V: Layer<I::Service>,
    R: Layer<V::Service>,
    J: Layer<R::Service>,
    A: Layer<J::Service>,
{
    type Service = Rendering<A::Service>;

    fn layer(&self, inner: S) -> Self::Service {
        let inner = HeaderRoom::new(inner, self.room.iter().sum());
        let inner = self.conditional.layer(inner);
        let inner = self.idempotency.layer(inner);
        let inner = self.versioning.layer(inner);
        let inner = self.rate_limit.layer(inner);
        let inner = self.auth.layer(inner);
        Rendering {
            inner: self.audit.layer(inner),
            renderer: self.renderer.clone(),
        }
    }
}

/// The outside of a [`PolicyStack`]: hands the stack's renderer, when it has one, to every
/// layer through the request extensions.
#[derive(Debug, Clone)]
pub struct Rendering<S> {
    inner: S,
    renderer: Option<StackRenderer>,
}

impl<S, ReqBody> Service<Request<ReqBody>> for Rendering<S>
where
    S: Service<Request<ReqBody>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        if let Some(renderer) = &self.renderer {
            request.extensions_mut().insert(renderer.clone());
        }
        self.inner.call(request)
    }
}

/// An empty slot of a [`PolicyStack`]: passes requests through and wraps the body in
/// [`PolicyBody::Inner`], so the stack's body type is the same with or without the layer.
#[derive(Debug, Clone, Copy, Default)]
pub struct Skip;

impl<S> Layer<S> for Skip {
    type Service = Skipped<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Skipped { inner }
    }
}

/// The service of an empty slot ([`Skip`]).
#[derive(Debug, Clone)]
pub struct Skipped<S> {
    inner: S,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Skipped<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<PolicyBody<ResBody>>;
    type Error = S::Error;
    type Future = SkippedFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        SkippedFuture {
            future: self.inner.call(request),
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`Skipped`]: the inner service's, its body in a [`PolicyBody`].
    pub struct SkippedFuture<F> {
        #[pin]
        future: F,
    }
}

impl<F, B, E> std::future::Future for SkippedFuture<F>
where
    F: std::future::Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<PolicyBody<B>>, E>;

    #[inline]
    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project()
            .future
            .poll(cx)
            .map(|outcome| outcome.map(|response| response.map(PolicyBody::inner)))
    }
}

/// A slot decided at run time (from a configuration): the layer, or nothing ([`Skip`]'s
/// behaviour).
#[derive(Debug, Clone)]
pub struct Maybe<L>(pub Option<L>);

impl<L> Maybe<L> {
    /// The layer, if the slot holds one.
    pub fn get(&self) -> Option<&L> {
        self.0.as_ref()
    }
}

impl<L> From<Option<L>> for Maybe<L> {
    fn from(layer: Option<L>) -> Self {
        Self(layer)
    }
}

impl<S, L: Layer<S>> Layer<S> for Maybe<L> {
    type Service = MaybeService<L::Service, S>;

    fn layer(&self, inner: S) -> Self::Service {
        match &self.0 {
            Some(layer) => MaybeService::On {
                service: layer.layer(inner),
            },
            None => MaybeService::Off {
                service: Skipped { inner },
            },
        }
    }
}

/// The service of a [`Maybe`] slot.
#[derive(Debug, Clone)]
pub enum MaybeService<L, S> {
    /// The slot holds a layer: its service.
    On {
        /// The layer's service.
        service: L,
    },
    /// The slot is empty.
    Off {
        /// The inner service, its body wrapped.
        service: Skipped<S>,
    },
}

impl<L, S, ReqBody, ResBody> Service<Request<ReqBody>> for MaybeService<L, S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    L: Service<Request<ReqBody>, Response = Response<PolicyBody<ResBody>>, Error = S::Error>,
{
    type Response = Response<PolicyBody<ResBody>>;
    type Error = S::Error;
    type Future = MaybeFuture<L::Future, <Skipped<S> as Service<Request<ReqBody>>>::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        match self {
            Self::On { service } => service.poll_ready(cx),
            Self::Off { service } => service.poll_ready(cx),
        }
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        match self {
            Self::On { service } => MaybeFuture::On {
                future: service.call(request),
            },
            Self::Off { service } => MaybeFuture::Off {
                future: service.call(request),
            },
        }
    }
}

pin_project! {
    /// The response future of a [`MaybeService`].
    #[project = MaybeFutureProj]
    #[allow(missing_docs)] // pin-project-lite takes no doc comment on a pinned field
    pub enum MaybeFuture<L, S> {
        /// The layer's future.
        On { #[pin] future: L },
        /// The skipped slot's future.
        Off { #[pin] future: S },
    }
}

impl<L, S, T> Future for MaybeFuture<L, S>
where
    L: Future<Output = T>,
    S: Future<Output = T>,
{
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        match self.project() {
            MaybeFutureProj::On { future } => future.poll(cx),
            MaybeFutureProj::Off { future } => future.poll(cx),
        }
    }
}
