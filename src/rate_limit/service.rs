//! [`RateLimit`]: the service the layer wraps around yours.

use std::future::Future;
use std::mem;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use http::{Request, Response, StatusCode};
use pin_project_lite::pin_project;
use tower_service::Service;

use super::headers;
use super::layer::{CompiledRule, Config, FailurePolicy, Limit, Unidentified};
use super::store::{BucketKey, Decision, RateLimitStore};
use crate::body::PolicyBody;
use crate::clock::ceil_secs;
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

type BoxedResponse<B, E> = Pin<Box<dyn Future<Output = Result<Response<PolicyBody<B>>, E>> + Send>>;

pin_project! {
    /// The response future of [`RateLimit`].
    #[project = ResponseFutureProj]
    #[allow(missing_docs)] // pin-project-lite takes no doc comment on a pinned field
    pub enum ResponseFuture<F, B, E> {
        /// An exempt route: the inner future, untouched.
        Exempt {
            #[pin]
            future: F,
        },
        /// An answer known before any store work (an unidentified caller).
        Ready {
            response: Option<Response<PolicyBody<B>>>,
        },
        /// A store decision, then maybe the inner service.
        Deciding {
            future: BoxedResponse<B, E>,
        },
    }
}

impl<F, B, E> Future for ResponseFuture<F, B, E>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<PolicyBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            ResponseFutureProj::Exempt { future } => {
                future.poll(cx).map_ok(|r| r.map(PolicyBody::inner))
            }
            ResponseFutureProj::Ready { response } => match response.take() {
                Some(response) => Poll::Ready(Ok(response)),
                None => Poll::Pending,
            },
            ResponseFutureProj::Deciding { future } => future.as_mut().poll(cx),
        }
    }
}

/// The bucket a request is checked against, and at what cost.
struct Plan {
    caller: String,
    limit: Arc<Limit>,
    /// The tier's `default` bucket (overridable per caller), or a route's own.
    tier_bucket: bool,
    cost: u32,
}

/// The bucket name of tier quotas in storage keys.
const TIER_BUCKET: &str = "default";

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
        (Some(caller), _) => caller.to_string(),
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
    let (limit, tier_bucket, cost) = match rule {
        Some(CompiledRule::Own {
            default,
            by_tier,
            cost,
        }) => (by_tier.get(&*tier.name).unwrap_or(default), false, *cost),
        Some(CompiledRule::Tier { cost }) => (tier, true, *cost),
        _ => (tier, true, 1),
    };
    Step::Check(Plan {
        caller: caller_key,
        limit: limit.clone(),
        tier_bucket,
        cost,
    })
}

fn refusal(decision: &Decision, plan: &Plan) -> Rejection {
    let quota = &decision.quota;
    let what = format!(
        "Rate limit of {} requests per {} s exceeded ({}).",
        quota.count(),
        ceil_secs(quota.period_micros()),
        plan.limit.name
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
            plan.cost,
            quota.capacity()
        ),
    };
    Rejection::new(StatusCode::TOO_MANY_REQUESTS, "rate_limit_exceeded", detail)
}

impl<St, S, ReqBody, ResBody> Service<Request<ReqBody>> for RateLimit<St, S>
where
    St: RateLimitStore,
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Send + 'static,
{
    type Response = Response<PolicyBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let plan = match plan(&self.config, &request) {
            Step::Exempt => {
                return ResponseFuture::Exempt {
                    future: self.inner.call(request),
                };
            }
            Step::Reject(rejection) => {
                let response = self
                    .config
                    .renderer
                    .respond(rejection, &RejectionContext::of(&request));
                return ResponseFuture::Ready {
                    response: Some(response),
                };
            }
            Step::Check(plan) => plan,
        };
        // The ready instance is the one that must be called; leave a fresh clone in its place.
        let clone = self.inner.clone();
        let mut inner = mem::replace(&mut self.inner, clone);
        let store = self.store.clone();
        let config = self.config.clone();
        let future = async move {
            let key = BucketKey {
                caller: &plan.caller,
                bucket: if plan.tier_bucket {
                    TIER_BUCKET
                } else {
                    &plan.limit.name
                },
                overridable: plan.tier_bucket,
            };
            let decision = match store.decide(key, &plan.limit.quota, plan.cost).await {
                Ok(decision) => decision,
                Err(error) => {
                    config.store_failures.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        layer = "rate_limit",
                        backend = store.backend_name(),
                        %error,
                        policy = ?config.failure,
                        "rate-limit store failed"
                    );
                    if config.failure == FailurePolicy::Closed {
                        let rejection = Rejection::new(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "rate_limit_unavailable",
                            "The rate limiter cannot decide right now; retry shortly.",
                        )
                        .with_header(
                            http::header::RETRY_AFTER,
                            http::HeaderValue::from_static("1"),
                        );
                        return Ok(config
                            .renderer
                            .respond(rejection, &RejectionContext::of(&request)));
                    }
                    return inner.call(request).await.map(|r| r.map(PolicyBody::inner));
                }
            };
            let policy = config
                .ietf_headers
                .then_some((&plan.limit.quota, &plan.limit.policy));
            if !decision.allowed {
                let mut rejection = refusal(&decision, &plan);
                headers::write(&mut rejection.headers, &decision, &plan.limit.name, policy);
                tracing::debug!(layer = "rate_limit", caller = %plan.caller, bucket = %plan.limit.name, "refused");
                return Ok(config
                    .renderer
                    .respond(rejection, &RejectionContext::of(&request)));
            }
            let mut response = inner.call(request).await?;
            headers::write(response.headers_mut(), &decision, &plan.limit.name, policy);
            Ok(response.map(PolicyBody::inner))
        };
        ResponseFuture::Deciding {
            future: Box::pin(future),
        }
    }
}
