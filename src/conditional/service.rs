//! [`Conditional`]: the service the layer wraps around yours.

use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body::Body;
use tower_service::Service;

use super::plan::{Plan, Target};
use super::policy::{CompiledRule, Config, Resource};
use super::precondition::Preconditions;
use super::read::{Read, known_or_warn, read_later, shadow_for_412};
use super::rejections::precondition_required;
use super::store::ValidatorStore;
use super::update::update;
use crate::body::PolicyBody;
use crate::buffer::BoxError;
use crate::kit::{Nothing, PolicyFuture, policy_future, take_ready};
use crate::rejection::Rejection;

/// The conditional-request service; built by [`ConditionalLayer`](super::ConditionalLayer).
#[derive(Debug, Clone)]
pub struct Conditional<St, S> {
    inner: S,
    store: St,
    config: Arc<Config>,
}

impl<St, S> Conditional<St, S> {
    pub(crate) fn new(inner: S, store: St, config: Arc<Config>) -> Self {
        Self {
            inner,
            store,
            config,
        }
    }
}

impl<St, S, ReqBody, ResBody> Service<Request<ReqBody>> for Conditional<St, S>
where
    St: ValidatorStore,
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send,
    ReqBody: Send + 'static,
    ResBody: Body<Data = Bytes> + Unpin + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    type Response = Response<PolicyBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<St, S, ReqBody, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let config = &self.config;
        let method = request.method().clone();
        if matches!(method, Method::CONNECT | Method::OPTIONS | Method::TRACE) {
            return ResponseFuture {
                inner: PolicyFuture::Calling {
                    future: self.inner.call(request),
                    stamp: None,
                    then: None,
                },
            };
        }
        let preconditions = match Preconditions::from_headers(request.headers()) {
            Ok(p) => p,
            Err(error) => {
                let rejection = Rejection::new(
                    StatusCode::BAD_REQUEST,
                    "precondition_malformed",
                    format!("If-Match or If-None-Match is malformed: {error}."),
                );
                return self.refuse(rejection, &request);
            }
        };
        let route = config.routes.find(&method, request.uri().path());
        let safe = matches!(method, Method::GET | Method::HEAD);
        if let Some(hit) = &route
            && hit.value.require_preconditions
            && matches!(method, Method::PUT | Method::PATCH | Method::DELETE)
            && !preconditions.guards_update()
        {
            return self.refuse(precondition_required(), &request);
        }
        if route.is_none() && !safe {
            // Not a tracked resource: nothing to decide before the handler, nothing to learn.
            return ResponseFuture {
                inner: PolicyFuture::Calling {
                    future: self.inner.call(request),
                    stamp: None,
                    then: None,
                },
            };
        }
        // Only a lookup reads the template and the parameters, and only updates call it.
        let describe = !safe && config.lookup.is_some();
        let target = route.map(|hit| {
            let path = request.uri().path();
            let rule: &CompiledRule = hit.value;
            Target {
                resource: Resource {
                    template: if describe {
                        hit.pattern.template().to_string()
                    } else {
                        String::new()
                    },
                    path: hit.pattern.resolve(path),
                    params: if describe {
                        hit.pattern
                            .params(path)
                            .map(|(n, v)| (n.to_string(), v.into_owned()))
                            .collect()
                    } else {
                        Vec::new()
                    },
                },
                fast_not_modified: rule.fast_not_modified,
                cache_control: rule.cache_control.clone(),
                require_preconditions: rule.require_preconditions,
            }
        });
        let plan = Plan {
            preconditions,
            target,
        };
        let (store, config) = (self.store.clone(), self.config.clone());
        if !safe {
            let inner = take_ready(&mut self.inner);
            return ResponseFuture::new(PolicyFuture::working(Box::pin(update(
                store, config, plan, inner, request,
            ))));
        }
        let context = shadow_for_412(&plan, &request);
        let immediate = match &plan.target {
            Some(target) => store
                .get_immediately(&target.resource.path)
                .map(|got| known_or_warn(&store, got)),
            None => Some(None),
        };
        let mut read = Read {
            store,
            config,
            plan,
            snapshot: None,
            method,
            context,
        };
        let Some(snapshot) = immediate else {
            let inner = take_ready(&mut self.inner);
            return ResponseFuture::new(PolicyFuture::working(Box::pin(read_later(
                read, inner, request,
            ))));
        };
        // The store answered without waiting: the handler is called now, and its future is
        // awaited in place, beside only what judging its answer needs.
        read.snapshot = snapshot;
        if let Some(response) = read.fast_not_modified() {
            return ResponseFuture::new(PolicyFuture::answer(response));
        }
        ResponseFuture {
            inner: PolicyFuture::Calling {
                future: self.inner.call(request),
                stamp: None,
                then: Some(read),
            },
        }
    }
}

impl<St, S> Conditional<St, S> {
    fn refuse<ReqBody, B>(
        &self,
        rejection: Rejection,
        request: &Request<ReqBody>,
    ) -> ResponseFuture<St, S, ReqBody, B>
    where
        St: ValidatorStore,
        S: Service<Request<ReqBody>>,
    {
        ResponseFuture::new(PolicyFuture::refused(
            &self.config.renderer,
            rejection,
            request,
        ))
    }
}

policy_future! {
    /// The response future of [`Conditional`]: a read's answer judged (and digested) as it
    /// comes, or an update decided before the handler, under the resource's lock.
    pub struct ResponseFuture<St, S, ReqBody, B> = PolicyFuture<S, ReqBody, B, Nothing, Read<St>>;
    where [St: ValidatorStore, S: Service<Request<ReqBody>>]
    polls where [St: ValidatorStore, S: Service<Request<ReqBody>, Response = Response<B>>, S::Error: Send + 'static, B: Body<Data = Bytes> + Unpin + Send + 'static, B::Error: Into<BoxError>]
}
