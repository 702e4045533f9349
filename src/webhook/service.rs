//! [`Webhook`]: the service the layer wraps around a webhook handler.

use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::HeaderName;
use http::{Request, Response, StatusCode};
use http_body::Body;
use tower_service::Service;

use super::policy::{Config, EventId, Scheme};
use super::signature::{SignatureError, verify_stripe};
use crate::body::PolicyBody;
use crate::buffer::{BoxError, read_request};
use crate::idempotency::{Fingerprint, IdempotencyStore};
use crate::kit::{Nothing, PolicyFuture, policy_future, take_ready};
use crate::once::{self, Keyed};
use crate::rejection::{Rejection, RejectionContext};

/// The header Stripe signs deliveries in.
pub const STRIPE_SIGNATURE: HeaderName = HeaderName::from_static("stripe-signature");

/// The webhook service; built by [`WebhookLayer`](super::WebhookLayer).
#[derive(Debug, Clone)]
pub struct Webhook<St, S> {
    inner: S,
    store: St,
    config: Arc<Config>,
}

impl<St, S> Webhook<St, S> {
    pub(crate) fn new(inner: S, store: St, config: Arc<Config>) -> Self {
        Self {
            inner,
            store,
            config,
        }
    }
}

impl<St, S, ReqBody, ResBody> Service<Request<ReqBody>> for Webhook<St, S>
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
        let inner = take_ready(&mut self.inner);
        let future = deliver(self.store.clone(), self.config.clone(), inner, request);
        ResponseFuture::new(PolicyFuture::working(Box::pin(future)))
    }
}

policy_future! {
    /// The response future of [`Webhook`].
    pub struct ResponseFuture<S, ReqBody, B> = PolicyFuture<S, ReqBody, B, Nothing, Nothing>;
    where [S: Service<Request<ReqBody>>]
    polls where [S: Service<Request<ReqBody>, Response = Response<B>>]
}

async fn deliver<St, S, ReqBody, ResBody>(
    store: St,
    config: Arc<Config>,
    mut inner: S,
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
    let refuse = |rejection: Rejection, parts: http::request::Parts| {
        let request = Request::from_parts(parts, ());
        Ok(config
            .settings
            .renderer
            .respond(rejection, &RejectionContext::of(&request)))
    };
    let limit = config.max_body_bytes;
    let payload = match read_request(&parts.headers, body, limit).await {
        Ok(payload) => payload,
        Err(refusal) => return refuse(refusal.rejection(limit), parts),
    };
    let verified = verify(&config, &parts.headers, &payload);
    if verified.is_ok() {
        crate::metrics::decision!("webhook", "accepted");
    } else {
        crate::metrics::decision!("webhook", "refused");
    }
    if let Err(error) = verified {
        tracing::warn!(layer = "webhook", scope = %config.scope, error = error.code(), "webhook refused");
        return refuse(refused(&error), parts);
    }
    let event = match event_id(&config.event_id, &parts.headers, &payload) {
        Ok(event) => event,
        Err(why) => {
            let rejection = Rejection::new(
                StatusCode::BAD_REQUEST,
                "webhook_event_id_missing",
                format!("The delivery carries no event id ({why})."),
            );
            return refuse(rejection, parts);
        }
    };
    let request = Request::from_parts(parts, ReqBody::from(payload));
    let Some(event) = event else {
        return inner.call(request).await.map(|r| r.map(PolicyBody::inner));
    };
    let keyed = Keyed {
        scope: config.scope.clone(),
        fingerprint: Fingerprint::of_bytes(event.as_bytes()),
        key: event,
    };
    once::run(store, config.settings.clone(), keyed, inner, request).await
}

fn verify(
    config: &Config,
    headers: &http::HeaderMap,
    payload: &[u8],
) -> Result<(), SignatureError> {
    match &config.scheme {
        Scheme::Stripe { tolerance_secs } => {
            let value = single(headers, &STRIPE_SIGNATURE)?;
            let now = config.clock.now_micros() / 1_000_000;
            verify_stripe(value, payload, &config.secrets, now, *tolerance_secs).map(|_| ())
        }
        Scheme::Hmac(scheme) => {
            let value = single(headers, scheme.header())?;
            scheme.verify(value, payload, &config.secrets)
        }
    }
}

/// The header's one value; two of them are malformed (which one was meant to be checked?).
fn single<'h>(
    headers: &'h http::HeaderMap,
    name: &HeaderName,
) -> Result<Option<&'h [u8]>, SignatureError> {
    let mut values = headers.get_all(name).iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(SignatureError::Malformed);
    }
    Ok(first.map(http::HeaderValue::as_bytes))
}

/// The event id, when the layer de-duplicates; without one, why there is none (a verified
/// delivery without one is refused).
fn event_id(
    source: &EventId,
    headers: &http::HeaderMap,
    payload: &[u8],
) -> Result<Option<String>, String> {
    let missing = |what: String| what;
    let id = match source {
        EventId::None => return Ok(None),
        EventId::Header(name) => headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .ok_or_else(|| missing(format!("no `{name}` header")))?,
        EventId::JsonPointer(pointer) => {
            let json: serde_json::Value = serde_json::from_slice(payload)
                .map_err(|_| missing("the body is not JSON".into()))?;
            json.pointer(pointer)
                .and_then(serde_json::Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| missing(format!("no string at `{pointer}`")))?
        }
    };
    if id.is_empty() || id.len() > crate::idempotency::MAX_KEY_LEN {
        return Err(missing("an empty or overlong id".into()));
    }
    Ok(Some(id))
}

fn refused(error: &SignatureError) -> Rejection {
    Rejection::new(StatusCode::BAD_REQUEST, error.code(), error.to_string())
}
