//! `GET` and `HEAD`: the handler's answer digested into an ETag, judged against the
//! preconditions, and its validators learned; or a 304 from what the store already knows.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{
    CACHE_CONTROL, CONTENT_LOCATION, DATE, ETAG, EXPIRES, HeaderName, LAST_MODIFIED, VARY,
};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body::Body;
use tower_service::Service;

use super::digest::{Digest, Digesting, start_digesting};
use super::plan::Plan;
use super::policy::Config;
use super::precondition::{Evaluation, evaluate};
use super::rejections::precondition_failed;
use super::store::{Snapshot, StoredValidators, ValidatorStore};
use super::validators::{view, write_validators};
use crate::body::PolicyBody;
use crate::buffer::BoxError;
use crate::kit::{Answer, BoxFuture, Finish, store_failed};
use crate::rejection::RequestShadow;

/// `GET` and `HEAD` when the store must be waited for: maybe a 304 from the known validators,
/// else the handler's answer with an ETag, then the preconditions judged against it.
pub(super) async fn read_later<St, S, ReqBody, ResBody>(
    mut read: Read<St>,
    mut inner: S,
    request: Request<ReqBody>,
) -> Result<Response<PolicyBody<ResBody>>, S::Error>
where
    St: ValidatorStore,
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Body<Data = Bytes> + Unpin,
    ResBody::Error: Into<BoxError>,
{
    if let Some(target) = &read.plan.target {
        read.snapshot = known_or_warn(&read.store, read.store.get(&target.resource.path).await);
    }
    if let Some(response) = read.fast_not_modified() {
        return Ok(response);
    }
    let response = inner.call(request).await?;
    if !Read::<St>::judges(&response) {
        return Ok(response.map(PolicyBody::inner));
    }
    let digesting = start_digesting(response, read.config.max_body_bytes, read.digest());
    read.judge(digesting).await
}

/// What the store knows of a resource before the handler runs: the fast path's answer, and the
/// generation a response learned from this read must still find. A failed store is answered
/// without.
pub(super) fn known_or_warn<St: ValidatorStore>(
    store: &St,
    got: Result<Snapshot, crate::error::StoreError>,
) -> Option<Snapshot> {
    got.map_err(|error| {
        // A read goes on without the store: the handler answers, digested as it comes.
        let open = crate::FailurePolicy::Open;
        store_failed("conditional", store.backend_name(), &error, open, None);
    })
    .ok()
}

impl<St> Read<St> {
    /// The 304 the known validators allow without running the handler, when the rule permits
    /// it.
    pub(super) fn fast_not_modified<B>(&self) -> Option<Response<PolicyBody<B>>> {
        let (plan, method) = (&self.plan, &self.method);
        let target = plan.target.as_ref()?;
        let known = self.snapshot.as_ref()?.validators.as_ref()?;
        if !(target.fast_not_modified
            && plan.preconditions.if_none_match.is_some()
            && evaluate(method, &plan.preconditions, Some(view(known)), None)
                == Evaluation::NotModified)
        {
            return None;
        }
        let mut headers = HeaderMap::new();
        write_validators(&mut headers, known);
        if let Some(value) = &target.cache_control {
            headers.insert(CACHE_CONTROL, value.clone());
        }
        let mut response = Response::new(PolicyBody::empty());
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        *response.headers_mut() = headers;
        crate::metrics::decision!("conditional", "not_modified");
        Some(response)
    }
}

/// Kept for a 412, which only `If-Match` or `If-Unmodified-Since` can bring about.
pub(super) fn shadow_for_412<B>(plan: &Plan, request: &Request<B>) -> Option<RequestShadow> {
    (plan.preconditions.if_match.is_some() || plan.preconditions.if_unmodified_since.is_some())
        .then(|| RequestShadow::of(request))
}

/// What judging a read's answer needs, kept while the handler works on it.
pub(crate) struct Read<St> {
    pub(super) store: St,
    pub(super) config: Arc<Config>,
    pub(super) plan: Plan,
    pub(super) snapshot: Option<Snapshot>,
    pub(super) method: Method,
    pub(super) context: Option<RequestShadow>,
}

impl<St, ResBody, E> Finish<ResBody, E> for Read<St>
where
    St: ValidatorStore,
    ResBody: Body<Data = Bytes> + Unpin + Send + 'static,
    ResBody::Error: Into<BoxError>,
    E: Send + 'static,
{
    /// The handler's answer as it goes out: at once when it is not a 200 (nothing to digest or
    /// judge), or when its body is at hand and the store knows its validators already (a
    /// read's usual case); else a future of it, judged against the preconditions (boxed: it
    /// awaits the body, or the store learning the validators).
    fn finish(
        self,
        outcome: Result<Response<ResBody>, E>,
    ) -> Result<Answer<ResBody, E>, BoxFuture<Answer<ResBody, E>>> {
        let response = match outcome {
            Ok(response) if Self::judges(&response) => response,
            other => return Ok(other.map(|r| r.map(PolicyBody::inner))),
        };
        match start_digesting(response, self.config.max_body_bytes, self.digest()) {
            Digesting::Done(response, validators) if self.to_learn(&validators).is_none() => {
                Ok(Ok(self.conclude(response, &validators)))
            }
            digesting => Err(Box::pin(self.judge(digesting))),
        }
    }
}

impl<St: ValidatorStore> Read<St> {
    /// Only a 200 is digested and judged: any other answer goes out as it is.
    fn judges<B>(response: &Response<B>) -> bool {
        response.status() == StatusCode::OK
    }

    fn digest(&self) -> Digest {
        if self.method == Method::HEAD {
            Digest::UnlessEmpty
        } else {
            Digest::Yes
        }
    }

    /// Where the store should learn the answer's validators, and the generation it answered
    /// with: when they are validators it does not know yet, of a resource it answered for.
    fn to_learn(&self, validators: &StoredValidators) -> Option<(&str, u64)> {
        let (target, snapshot) = (self.plan.target.as_ref()?, self.snapshot.as_ref()?);
        ((validators.etag.is_some() || validators.last_modified.is_some())
            && snapshot.validators.as_ref() != Some(validators))
        .then_some((target.resource.path.as_str(), snapshot.generation))
    }

    /// The answer with its validators, judged; never an error (`E` is the inner service's).
    async fn judge<ResBody, E>(self, digesting: Digesting<ResBody>) -> Answer<ResBody, E>
    where
        ResBody: Body<Data = Bytes> + Unpin,
        ResBody::Error: Into<BoxError>,
    {
        // Boxed: inline, a body's reading would take this future past the allocator's
        // per-thread cache (about 1 KiB), and a larger allocation costs several times more.
        let (response, validators) = Box::pin(digesting.done()).await;
        if let Some((path, generation)) = self.to_learn(&validators) {
            // Awaited, so an update sent right after this answer finds the validators.
            // Boxed: a rare wait, kept out of the future every read allocates.
            if let Err(error) =
                Box::pin(
                    self.store
                        .learn(path, &validators, generation, self.config.validator_ttl),
                )
                .await
            {
                tracing::warn!(layer = "conditional", backend = self.store.backend_name(), %error,
                    "could not record validators");
            }
        }
        Ok(self.conclude(response, &validators))
    }

    /// The answer with the resource's Cache-Control, judged against the preconditions.
    fn conclude<ResBody>(
        self,
        mut response: Response<PolicyBody<ResBody>>,
        validators: &StoredValidators,
    ) -> Response<PolicyBody<ResBody>> {
        if let Some(target) = &self.plan.target
            && let Some(value) = &target.cache_control
            && !response.headers().contains_key(CACHE_CONTROL)
        {
            response.headers_mut().insert(CACHE_CONTROL, value.clone());
        }
        match evaluate(
            &self.method,
            &self.plan.preconditions,
            Some(view(validators)),
            Some(StatusCode::OK),
        ) {
            Evaluation::Proceed => {
                crate::metrics::decision!("conditional", "proceed");
                response
            }
            Evaluation::NotModified => {
                crate::metrics::decision!("conditional", "not_modified");
                not_modified(response)
            }
            Evaluation::PreconditionFailed => {
                crate::metrics::decision!("conditional", "precondition_failed");
                let context = self.context.unwrap_or_default();
                self.config
                    .renderer
                    .respond(precondition_failed(validators), &context.context())
            }
        }
    }
}

/// A 304 from the 200 it replaces: no body, and only the headers RFC 9110 section 15.4.5 keeps
/// (Last-Modified too when there is no ETag, to guide caches).
fn not_modified<B>(response: Response<PolicyBody<B>>) -> Response<PolicyBody<B>> {
    let (mut parts, _) = response.into_parts();
    let has_etag = parts.headers.contains_key(ETAG);
    let kept: [HeaderName; 6] = [ETAG, CACHE_CONTROL, CONTENT_LOCATION, DATE, EXPIRES, VARY];
    let mut headers = HeaderMap::new();
    for (name, value) in &parts.headers {
        if kept.contains(name) || (!has_etag && name == LAST_MODIFIED) {
            headers.append(name, value.clone());
        }
    }
    parts.headers = headers;
    parts.status = StatusCode::NOT_MODIFIED;
    Response::from_parts(parts, PolicyBody::empty())
}
