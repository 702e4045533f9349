//! [`RateLimit`]: the service the layer wraps around yours.

use std::future::Future;
use std::mem;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, ready};

use http::{Request, Response, StatusCode};
use pin_project_lite::pin_project;
use tower_service::Service;

use super::headers;
use super::layer::{CompiledRule, Config, Limit, Unidentified};
use super::store::{BucketKey, Decision, RateLimitStore};
use crate::body::PolicyBody;
use crate::clock::ceil_secs;
use crate::error::{FailurePolicy, StoreError};
use crate::rejection::{Rejection, RejectionContext};

/// The rate-limiting service; built by [`RateLimitLayer`](super::RateLimitLayer).
#[derive(Debug, Clone)]
pub struct RateLimit<St, S> {
    inner: S,
    store: St,
    config: Arc<Config>,
}

impl<St, S> RateLimit<St, S> {
    pub(crate) fn new(inner: S, store: St, config: Arc<Config>) -> Self {
        Self {
            inner,
            store,
            config,
        }
    }
}

type DecisionFuture = Pin<Box<dyn Future<Output = Result<Decision, StoreError>> + Send>>;

pin_project! {
    /// The response future of [`RateLimit`]: the store's decision, then the inner service's call.
    pub struct ResponseFuture<S, ReqBody, B>
    where
        S: Service<Request<ReqBody>>,
    {
        #[pin]
        state: State<S, ReqBody, B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, ReqBody, B>
    where
        S: Service<Request<ReqBody>>,
    {
        // An answer known without the inner service.
        Ready { response: Option<Response<PolicyBody<B>>> },
        // Waiting for the store; boxed because a store's future type cannot be named.
        Deciding {
            decision: DecisionFuture,
            pending: Option<(S, Request<ReqBody>)>,
            limit: Arc<Limit>,
            cost: u32,
            config: Arc<Config>,
        },
        // The inner service's future; the headers to add when it answers, if a decision was made.
        Calling {
            #[pin]
            future: S::Future,
            headers: Option<(Decision, Arc<Limit>, bool)>,
        },
    }
}

impl<S, ReqBody, B> ResponseFuture<S, ReqBody, B>
where
    S: Service<Request<ReqBody>>,
{
    fn ready(response: Response<PolicyBody<B>>) -> Self {
        Self {
            state: State::Ready {
                response: Some(response),
            },
        }
    }

    fn calling(future: S::Future, headers: Option<(Decision, Arc<Limit>, bool)>) -> Self {
        Self {
            state: State::Calling { future, headers },
        }
    }
}

impl<S, ReqBody, B> Future for ResponseFuture<S, ReqBody, B>
where
    S: Service<Request<ReqBody>, Response = Response<B>>,
{
    type Output = Result<Response<PolicyBody<B>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            let next = match state.as_mut().project() {
                StateProj::Ready { response } => {
                    return match response.take() {
                        Some(response) => Poll::Ready(Ok(response)),
                        None => Poll::Pending,
                    };
                }
                StateProj::Calling { future, headers } => {
                    let mut response = ready!(future.poll(cx))?;
                    if let Some((decision, limit, ietf)) = headers.take() {
                        headers::write(response.headers_mut(), &decision, &limit, ietf);
                    }
                    return Poll::Ready(Ok(response.map(PolicyBody::inner)));
                }
                StateProj::Deciding {
                    decision,
                    pending,
                    limit,
                    cost,
                    config,
                } => {
                    let outcome = ready!(decision.as_mut().poll(cx));
                    let Some((mut inner, request)) = pending.take() else {
                        return Poll::Pending;
                    };
                    decided(outcome, &mut inner, request, limit, *cost, config)
                }
            };
            state.set(next);
        }
    }
}

/// What follows a decision: the inner call (with headers to add), or an answer without it.
fn decided<S, ReqBody, B>(
    outcome: Result<Decision, StoreError>,
    inner: &mut S,
    request: Request<ReqBody>,
    limit: &Arc<Limit>,
    cost: u32,
    config: &Config,
) -> State<S, ReqBody, B>
where
    S: Service<Request<ReqBody>>,
{
    let rejection = match outcome {
        Ok(decision) if decision.allowed => {
            return State::Calling {
                future: inner.call(request),
                headers: Some((decision, limit.clone(), config.ietf_headers)),
            };
        }
        Ok(decision) => {
            let mut rejection = refusal(&decision, limit, cost);
            headers::write(
                &mut rejection.headers,
                &decision,
                limit,
                config.ietf_headers,
            );
            rejection
        }
        Err(error) => {
            config.store_failures.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                layer = "rate_limit",
                backend = config.backend,
                %error,
                policy = ?config.failure,
                "rate-limit store failed"
            );
            if config.failure == FailurePolicy::Open {
                return State::Calling {
                    future: inner.call(request),
                    headers: None,
                };
            }
            Rejection::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "rate_limit_unavailable",
                "The rate limiter cannot decide right now; retry shortly.",
            )
            .with_header(
                http::header::RETRY_AFTER,
                http::HeaderValue::from_static("1"),
            )
        }
    };
    State::Ready {
        response: Some(
            config
                .renderer
                .respond(rejection, &RejectionContext::of(&request)),
        ),
    }
}

/// The bucket a request is checked against, and at what cost.
struct Plan {
    caller: String,
    limit: Arc<Limit>,
    cost: u32,
}

enum Step {
    Exempt,
    Reject(Rejection),
    Check(Plan),
}

fn plan<B>(config: &Config, request: &Request<B>) -> Step {
    let rule = config
        .routes
        .find(request.method(), request.uri().path())
        .map(|m| m.value);
    if matches!(rule, Some(CompiledRule::Exempt)) {
        return Step::Exempt;
    }
    let caller = config
        .extractor
        .identify(request.headers(), request.extensions());
    let caller_key = match (&caller, &config.unidentified) {
        (Some(caller), _) => caller.key(),
        (None, Unidentified::SharedAnonymous) => "anonymous".to_string(),
        (None, Unidentified::Reject { challenge }) => {
            let rejection = Rejection::new(
                StatusCode::UNAUTHORIZED,
                "unidentified_caller",
                "This API is rate limited per caller and the request does not say who is calling; send credentials.",
            )
            .with_header(http::header::WWW_AUTHENTICATE, challenge.clone());
            return Step::Reject(rejection);
        }
    };
    let tier = config.tier_for(caller.as_ref());
    let (limit, cost) = match rule {
        Some(CompiledRule::Own {
            default,
            by_tier,
            cost,
        }) => (by_tier.get(&*tier.name).unwrap_or(default), *cost),
        Some(CompiledRule::Tier { cost }) => (tier, *cost),
        _ => (tier, 1),
    };
    Step::Check(Plan {
        caller: caller_key,
        limit: limit.clone(),
        cost,
    })
}

fn refusal(decision: &Decision, limit: &Limit, cost: u32) -> Rejection {
    let quota = &decision.quota;
    let what = format!(
        "Rate limit of {} requests per {} s exceeded ({}).",
        quota.count(),
        ceil_secs(quota.period_micros()),
        limit.name
    );
    let detail = match decision.retry_after_us {
        Some(retry) => {
            let resets = std::time::UNIX_EPOCH
                + std::time::Duration::from_secs(ceil_secs(
                    decision.now_us + decision.reset_after_us,
                ));
            format!(
                "{what} Retry in {} s, at {}.",
                ceil_secs(retry).max(1),
                httpdate::fmt_http_date(resets)
            )
        }
        None => format!(
            "{what} This request costs {} units, more than the {} this limit allows at once, so it can never pass.",
            cost,
            quota.capacity()
        ),
    };
    Rejection::new(StatusCode::TOO_MANY_REQUESTS, "rate_limit_exceeded", detail)
}

impl<St, S, ReqBody, ResBody> Service<Request<ReqBody>> for RateLimit<St, S>
where
    St: RateLimitStore,
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
{
    type Response = Response<PolicyBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let plan = match plan(&self.config, &request) {
            Step::Exempt => return ResponseFuture::calling(self.inner.call(request), None),
            Step::Reject(rejection) => {
                let response = self
                    .config
                    .renderer
                    .respond(rejection, &RejectionContext::of(&request));
                return ResponseFuture::ready(response);
            }
            Step::Check(plan) => plan,
        };
        let Plan {
            caller,
            limit,
            cost,
        } = plan;
        let key = BucketKey {
            caller: &caller,
            bucket: &limit.bucket,
            overridable: limit.overridable,
        };
        if let Some(outcome) = self.store.decide_immediately(key, &limit.quota, cost) {
            // Decided now: the ready inner service is called now, no clone needed.
            return ResponseFuture {
                state: decided(
                    outcome,
                    &mut self.inner,
                    request,
                    &limit,
                    cost,
                    &self.config,
                ),
            };
        }
        let store = self.store.clone();
        let for_key = limit.clone();
        let decision: DecisionFuture = Box::pin(async move {
            let key = BucketKey {
                caller: &caller,
                bucket: &for_key.bucket,
                overridable: for_key.overridable,
            };
            store.decide(key, &for_key.quota, cost).await
        });
        // The ready instance is the one that must be called; leave a fresh clone in its place.
        let clone = self.inner.clone();
        let inner = mem::replace(&mut self.inner, clone);
        ResponseFuture {
            state: State::Deciding {
                decision,
                pending: Some((inner, request)),
                limit,
                cost,
                config: self.config.clone(),
            },
        }
    }
}
