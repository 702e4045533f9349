//! [`RateLimit`]: the service the layer wraps around yours.

use std::borrow::Cow;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response, StatusCode};
use tower_service::Service;

use super::headers;
use super::policy::{CompiledRule, Config, Limit, Unidentified};
use super::store::{BucketKey, Decision, RateLimitStore};
use crate::body::PolicyBody;
use crate::clock::ceil_secs;
use crate::error::{FailurePolicy, StoreError};
use crate::kit::{Gate, Nothing, PolicyFuture, policy_future, store_failed};
use crate::principal::Caller;
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

policy_future! {
    /// The response future of [`RateLimit`]: the store's decision, then the inner service's call.
    pub struct ResponseFuture<S, ReqBody, B> = PolicyFuture<S, ReqBody, B, Deciding, Nothing>;
    where [S: Service<Request<ReqBody>>]
    polls where [S: Service<Request<ReqBody>, Response = Response<B>>]
}

/// What a decision waits with: the limit checked, at what cost, under which configuration.
struct Deciding {
    limit: Arc<Limit>,
    cost: u32,
    config: Arc<Config>,
}

impl Gate for Deciding {
    type Verdict = Result<Decision, StoreError>;
    /// The headers to write: the decision, its limit, and whether the IETF fields are on.
    type Stamp = (Decision, Arc<Limit>, bool);

    fn admit<S, ReqBody, B, T>(
        self,
        verdict: Self::Verdict,
        inner: &mut S,
        request: Request<ReqBody>,
    ) -> PolicyFuture<S, ReqBody, B, Self, T>
    where
        S: Service<Request<ReqBody>>,
    {
        decided(
            verdict,
            inner,
            request,
            &self.limit,
            self.cost,
            &self.config,
        )
    }

    fn stamp<B>((decision, limit, ietf): Self::Stamp, response: &mut Response<B>) {
        headers::write(response.headers_mut(), &decision, &limit.fields, ietf);
    }
}

/// What follows a decision: the inner call (with headers to add), or an answer without it.
#[inline]
fn decided<S, ReqBody, B, T>(
    outcome: Result<Decision, StoreError>,
    inner: &mut S,
    request: Request<ReqBody>,
    limit: &Arc<Limit>,
    cost: u32,
    config: &Config,
) -> PolicyFuture<S, ReqBody, B, Deciding, T>
where
    S: Service<Request<ReqBody>>,
{
    let rejection = match outcome {
        Ok(decision) if decision.allowed => {
            crate::metrics::decision!("rate_limit", "allowed");
            let stamp = (decision, limit.clone(), config.ietf_headers);
            return PolicyFuture::call(inner, request, Some(stamp));
        }
        Ok(decision) => {
            crate::metrics::decision!("rate_limit", "limited");
            let mut rejection = refusal(&decision, limit, cost);
            headers::write(
                &mut rejection.headers,
                &decision,
                &limit.fields,
                config.ietf_headers,
            );
            rejection
        }
        Err(error) => {
            crate::metrics::decision!("rate_limit", "store_error");
            let policy = store_failed(
                "rate_limit",
                config.backend,
                &error,
                config.failure,
                Some(&config.store_failures),
            );
            if policy == FailurePolicy::Open {
                return PolicyFuture::call(inner, request, None);
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
    PolicyFuture::answer(
        config
            .renderer
            .respond(rejection, &RejectionContext::of(&request)),
    )
}

/// The bucket a request is checked against, and at what cost.
struct Plan<'a> {
    caller: Option<Caller>,
    limit: &'a Arc<Limit>,
    cost: u32,
}

enum Planned<'a> {
    Exempt,
    Reject(Rejection),
    Check(Plan<'a>),
}

fn plan<'a, B>(config: &'a Config, request: &Request<B>) -> Planned<'a> {
    let rule = config
        .routes
        .find(request.method(), request.uri().path())
        .map(|m| m.value);
    if matches!(rule, Some(CompiledRule::Exempt)) {
        return Planned::Exempt;
    }
    let caller = config
        .extractor
        .identify(request.headers(), request.extensions());
    if let (None, Unidentified::Reject { challenge }) = (&caller, &config.unidentified) {
        let rejection = Rejection::new(
            StatusCode::UNAUTHORIZED,
            "unidentified_caller",
            "This API is rate limited per caller and the request does not say who is calling; send credentials.",
        )
        .with_header(http::header::WWW_AUTHENTICATE, challenge.clone());
        return Planned::Reject(rejection);
    }
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
    Planned::Check(Plan {
        caller,
        limit,
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
        let config = &self.config;
        let step = match plan(config, &request) {
            Planned::Exempt => PolicyFuture::call(&mut self.inner, request, None),
            Planned::Reject(rejection) => PolicyFuture::answer(
                config
                    .renderer
                    .respond(rejection, &RejectionContext::of(&request)),
            ),
            Planned::Check(plan) => {
                let (limit, cost) = (plan.limit, plan.cost);
                // Only `Unidentified::SharedAnonymous` lets a request without a caller this far.
                let caller = plan
                    .caller
                    .as_ref()
                    .map_or(Cow::Borrowed("anonymous"), Caller::key_ref);
                let key = BucketKey {
                    caller: &caller,
                    bucket: &limit.bucket,
                    overridable: limit.overridable,
                };
                match self.store.decide_immediately(key, &limit.quota, cost) {
                    // Decided now: the ready inner service is called now, no clone needed.
                    Some(outcome) => {
                        decided(outcome, &mut self.inner, request, limit, cost, config)
                    }
                    None => {
                        let store = self.store.clone();
                        let caller = caller.into_owned();
                        let for_key = limit.clone();
                        let decision = Box::pin(async move {
                            let key = BucketKey {
                                caller: &caller,
                                bucket: &for_key.bucket,
                                overridable: for_key.overridable,
                            };
                            let started = std::time::Instant::now();
                            let decided = store.decide(key, &for_key.quota, cost).await;
                            crate::metrics::store_latency(
                                "rate_limit",
                                store.backend_name(),
                                started.elapsed().as_secs_f64(),
                            );
                            decided
                        });
                        let gate = Deciding {
                            limit: limit.clone(),
                            cost,
                            config: config.clone(),
                        };
                        PolicyFuture::check(decision, &mut self.inner, request, gate)
                    }
                }
            }
        };
        ResponseFuture::new(step)
    }
}
