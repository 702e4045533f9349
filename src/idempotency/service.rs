//! [`Idempotency`]: the service the layer wraps around yours.

use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::Body;
use tower_service::Service;

use super::fingerprint::Fingerprint;
use super::key::{self, KeyError};
use super::policy::{Config, KeyRule};
use super::store::IdempotencyStore;
use crate::body::PolicyBody;
use crate::buffer::{BoxError, read_request};
use crate::kit::{Nothing, PolicyFuture, policy_future, take_ready};
use crate::once::{self, Keyed};
use crate::rejection::{Rejection, RejectionContext};

/// The idempotency service; built by [`IdempotencyLayer`](super::IdempotencyLayer).
#[derive(Debug, Clone)]
pub struct Idempotency<St, S> {
    inner: S,
    store: St,
    config: Arc<Config>,
}

impl<St, S> Idempotency<St, S> {
    pub(crate) fn new(inner: S, store: St, config: Arc<Config>) -> Self {
        Self {
            inner,
            store,
            config,
        }
    }
}

impl<St, S, ReqBody, ResBody> Service<Request<ReqBody>> for Idempotency<St, S>
where
    St: IdempotencyStore,
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send,
    ReqBody: Body<Data = Bytes> + From<Bytes> + Send + 'static,
    ReqBody::Error: Into<BoxError>,
    ResBody: Body<Data = Bytes> + Unpin + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    type Response = Response<PolicyBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let config = &self.config;
        let rule = config.rule(request.method(), request.uri().path());
        if rule == KeyRule::Ignored {
            return ResponseFuture {
                inner: PolicyFuture::Calling {
                    future: self.inner.call(request),
                    stamp: None,
                    then: None,
                },
            };
        }
        let key = match key::from_headers(request.headers()) {
            Ok(Some(key)) => key.into_owned(),
            Ok(None) if rule == KeyRule::Optional => {
                return ResponseFuture {
                    inner: PolicyFuture::Calling {
                        future: self.inner.call(request),
                        stamp: None,
                        then: None,
                    },
                };
            }
            Ok(None) => return self.refuse(missing(), &request),
            Err(error) => return self.refuse(invalid(error), &request),
        };
        let scope = config
            .extractor
            .identify(request.headers(), request.extensions())
            .map_or_else(|| "anonymous".to_string(), |caller| caller.key());
        let inner = take_ready(&mut self.inner);
        let future = keyed(
            self.store.clone(),
            config.clone(),
            scope,
            key,
            inner,
            request,
        );
        ResponseFuture::new(PolicyFuture::working(Box::pin(future)))
    }
}

impl<St, S> Idempotency<St, S> {
    fn refuse<ReqBody, B>(
        &self,
        rejection: Rejection,
        request: &Request<ReqBody>,
    ) -> ResponseFuture<S, ReqBody, B>
    where
        S: Service<Request<ReqBody>>,
    {
        ResponseFuture::new(PolicyFuture::refused(
            &self.config.settings.renderer,
            rejection,
            request,
        ))
    }
}

policy_future! {
    /// The response future of [`Idempotency`].
    pub struct ResponseFuture<S, ReqBody, B> = PolicyFuture<S, ReqBody, B, Nothing, Nothing>;
    where [S: Service<Request<ReqBody>>]
    polls where [S: Service<Request<ReqBody>, Response = Response<B>>]
}

async fn keyed<St, S, ReqBody, ResBody>(
    store: St,
    config: Arc<Config>,
    scope: String,
    key: String,
    inner: S,
    request: Request<ReqBody>,
) -> Result<Response<PolicyBody<ResBody>>, S::Error>
where
    St: IdempotencyStore,
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ReqBody: Body<Data = Bytes> + From<Bytes>,
    ReqBody::Error: Into<BoxError>,
    ResBody: Body<Data = Bytes> + Unpin,
    ResBody::Error: Into<BoxError>,
{
    let (parts, body) = request.into_parts();
    let limit = config.max_request_bytes;
    let bytes = match read_request(&parts.headers, body, limit).await {
        Ok(bytes) => bytes,
        Err(refusal) => {
            let request = Request::from_parts(parts, ());
            return Ok(config
                .settings
                .renderer
                .respond(refusal.rejection(limit), &RejectionContext::of(&request)));
        }
    };
    let fingerprint = Fingerprint::of_request(&parts.method, &parts.uri, &bytes);
    let request = Request::from_parts(parts, ReqBody::from(bytes));
    let keyed = Keyed {
        scope,
        key,
        fingerprint,
    };
    once::run(store, config.settings.clone(), keyed, inner, request).await
}

fn missing() -> Rejection {
    Rejection::new(
        StatusCode::BAD_REQUEST,
        "idempotency_key_missing",
        "This endpoint requires an Idempotency-Key header: a unique value (a UUID, say) per logical request, sent again unchanged on every retry.",
    )
}

fn invalid(error: KeyError) -> Rejection {
    Rejection::new(
        StatusCode::BAD_REQUEST,
        "idempotency_key_invalid",
        error.to_string(),
    )
}
