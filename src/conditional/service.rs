//! [`Conditional`]: the service the layer wraps around yours.

use std::mem;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{
    CACHE_CONTROL, CONTENT_LOCATION, DATE, ETAG, EXPIRES, HeaderName, HeaderValue, LAST_MODIFIED,
    RETRY_AFTER, VARY,
};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body::Body;
use tower_service::Service;

use super::etag::EntityTag;
use super::policy::{CompiledRule, Config, Current, Resource};
use super::precondition::{Evaluation, Preconditions, Validators, evaluate};
use super::store::{Locked, Snapshot, StoredValidators, Update, ValidatorStore};
use crate::body::PolicyBody;
use crate::buffer::{BoxError, Collected, Reading, collect_now, collect_rest};
use crate::kit::{
    Answer, BoxFuture, Finish, Nothing, PolicyFuture, policy_future, policy_future_poll, take_ready,
};
use crate::owner::OwnerToken;
use crate::rejection::{Rejection, RejectionContext, RequestShadow};

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

/// What a request is to the layer.
struct Plan {
    preconditions: Preconditions,
    target: Option<Target>,
}

/// A request to a resource route.
struct Target {
    resource: Resource,
    fast_not_modified: bool,
    cache_control: Option<HeaderValue>,
    require_preconditions: bool,
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
    pub struct ResponseFuture<St, S, ReqBody, B> = PolicyFuture<S, ReqBody, B, Nothing, Read<St>>
    where St: ValidatorStore, S: Service<Request<ReqBody>>
}

policy_future_poll! {
    ResponseFuture<St, S, ReqBody, B>
    where
        St: ValidatorStore,
        S: Service<Request<ReqBody>, Response = Response<B>>,
        S::Error: Send + 'static,
        B: Body<Data = Bytes> + Unpin + Send + 'static,
        B::Error: Into<BoxError>
}

/// `GET` and `HEAD` when the store must be waited for: maybe a 304 from the known validators,
/// else the handler's answer with an ETag, then the preconditions judged against it.
async fn read_later<St, S, ReqBody, ResBody>(
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
fn known_or_warn<St: ValidatorStore>(
    store: &St,
    got: Result<Snapshot, crate::error::StoreError>,
) -> Option<Snapshot> {
    got.map_err(|error| {
        tracing::warn!(layer = "conditional", backend = store.backend_name(), %error,
            "validator store failed; answering without it");
    })
    .ok()
}

impl<St> Read<St> {
    /// The 304 the known validators allow without running the handler, when the rule permits
    /// it.
    fn fast_not_modified<B>(&self) -> Option<Response<PolicyBody<B>>> {
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
fn shadow_for_412<B>(plan: &Plan, request: &Request<B>) -> Option<RequestShadow> {
    (plan.preconditions.if_match.is_some() || plan.preconditions.if_unmodified_since.is_some())
        .then(|| RequestShadow::of(request))
}

/// What judging a read's answer needs, kept while the handler works on it.
pub(crate) struct Read<St> {
    store: St,
    config: Arc<Config>,
    plan: Plan,
    snapshot: Option<Snapshot>,
    method: Method,
    context: Option<RequestShadow>,
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

/// `PUT`, `PATCH`, `DELETE` and `POST` on a resource: under its write lock, the preconditions
/// decided against its current validators before the handler runs, and the validators the
/// answer names kept for the next request.
async fn update<St, S, ReqBody, ResBody>(
    store: St,
    config: Arc<Config>,
    plan: Plan,
    mut inner: S,
    request: Request<ReqBody>,
) -> Result<Response<PolicyBody<ResBody>>, S::Error>
where
    St: ValidatorStore,
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Body<Data = Bytes> + Unpin,
    ResBody::Error: Into<BoxError>,
{
    let Some(target) = plan.target else {
        return inner.call(request).await.map(|r| r.map(PolicyBody::inner));
    };
    let resource = target.resource;
    let refuse = |rejection: Rejection, request: &Request<ReqBody>| {
        Ok(config
            .renderer
            .respond(rejection, &RejectionContext::of(request)))
    };
    let owner = OwnerToken::new();
    // Armed before the lock is asked for: a request dropped while asking (or a reply lost to a
    // timeout) still releases a lock it may have been given. Releasing one it never got is a
    // no-op: the owner does not match.
    let mut lock = LockGuard {
        store: store.clone(),
        resource: resource.path.clone(),
        owner: Some(owner.clone()),
        ttl: config.validator_ttl,
    };
    let deadline = tokio::time::Instant::now() + config.lock_wait;
    let mut pause = Duration::from_millis(2);
    let mut judged_while_busy = false;
    let known = loop {
        match store.lock(&resource.path, &owner, config.lease).await {
            Ok(Locked::Held { current }) => break current,
            Ok(Locked::Busy { current, .. }) => {
                // A precondition that the validators of now already fail fails for a request
                // ordered before the update under way (or, when a lookup sees that update's
                // change, after it): either way it need not wait. Judged once, as a lookup may
                // cost a query; one that passes waits, and is judged again under the lock.
                if !judged_while_busy {
                    judged_while_busy = true;
                    if let Ok(current) = current_validators(&config, &resource, current).await
                        && judge(request.method(), &plan.preconditions, current.as_ref())
                            == Evaluation::PreconditionFailed
                    {
                        lock.disarm();
                        crate::metrics::decision!("conditional", "precondition_failed");
                        return refuse(precondition_failed(&named(current)), &request);
                    }
                }
                let now = tokio::time::Instant::now();
                if now >= deadline {
                    lock.disarm();
                    return refuse(busy(), &request);
                }
                store
                    .until_unlocked(&resource.path, pause.min(deadline - now))
                    .await;
                pause = (pause * 2).min(Duration::from_millis(100));
            }
            Err(error) => {
                tracing::error!(layer = "conditional", backend = store.backend_name(), %error,
                    "validator store failed; answering 503");
                lock.unlock(Update::Keep).await;
                return refuse(unavailable(), &request);
            }
        }
    };
    let current = match current_validators(&config, &resource, known).await {
        Ok(current) => current,
        Err(error) => {
            tracing::error!(layer = "conditional", %error,
                "the validator lookup failed; answering 503");
            lock.unlock(Update::Keep).await;
            return refuse(unavailable(), &request);
        }
    };
    // `If-Unmodified-Since` guards nothing on a resource without a modification date (RFC 9110
    // ignores it there), so alone it does not satisfy a required precondition.
    let dated = matches!(&current, Some(Current::Exists(v)) if v.last_modified.is_some());
    if target.require_preconditions
        && plan.preconditions.if_match.is_none()
        && plan.preconditions.if_none_match.is_none()
        && !dated
        && matches!(
            *request.method(),
            Method::PUT | Method::PATCH | Method::DELETE
        )
        && !matches!(current, Some(Current::Missing))
    {
        lock.unlock(Update::Keep).await;
        return refuse(precondition_required(), &request);
    }
    match judge(request.method(), &plan.preconditions, current.as_ref()) {
        Evaluation::Proceed => crate::metrics::decision!("conditional", "proceed"),
        _ => {
            crate::metrics::decision!("conditional", "precondition_failed");
            // What was learned stays: nothing changed.
            lock.unlock(Update::Keep).await;
            return refuse(precondition_failed(&named(current)), &request);
        }
    }
    let method = request.method().clone();
    let response = match inner.call(request).await {
        Ok(response) => response,
        Err(error) => {
            lock.unlock(Update::Forget).await;
            return Err(error);
        }
    };
    if !response.status().is_success() {
        lock.unlock(Update::Keep).await;
        return Ok(response.map(PolicyBody::inner));
    }
    if method == Method::DELETE {
        lock.unlock(Update::Forget).await;
        return Ok(response.map(PolicyBody::inner));
    }
    // Only validators the handler states: a digest of an update's answer (an empty 204, a
    // constant `{"ok":true}`) need not be the new representation's (RFC 9110 section 9.3.4).
    let (response, validators) = stated(response);
    let update = if validators.etag.is_some() || validators.last_modified.is_some() {
        Update::Set(validators)
    } else {
        Update::Forget
    };
    lock.unlock(update).await;
    Ok(response)
}

/// Whether a response without an ETag gets one digested from its body.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Digest {
    Yes,
    /// `HEAD`: an empty body may be one a server stripped, not the representation's.
    UnlessEmpty,
}

/// The response with only the validators its handler states: its ETag and Last-Modified.
fn stated<B>(response: Response<B>) -> (Response<PolicyBody<B>>, StoredValidators) {
    let headers = response.headers();
    let validators = StoredValidators {
        etag: headers
            .get(ETAG)
            .and_then(|value| EntityTag::parse(value.as_bytes()).ok()),
        last_modified: last_modified(headers),
    };
    (response.map(PolicyBody::inner), validators)
}

fn last_modified(headers: &HeaderMap) -> Option<std::time::SystemTime> {
    headers
        .get(LAST_MODIFIED)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok())
}

/// A response on its way to its validators: done, or its body still being read.
enum Digesting<B> {
    Done(Response<PolicyBody<B>>, StoredValidators),
    Reading {
        parts: http::response::Parts,
        reading: Reading,
        body: B,
        last_modified: Option<std::time::SystemTime>,
        digest: Digest,
    },
}

/// The response with its validators: the handler's ETag (never replaced) or one digested from
/// a body within the limit, and its Last-Modified. Found without waiting when the body's
/// frames are at hand, as a handler's buffered answer's are.
fn start_digesting<B>(response: Response<B>, limit: usize, digest: Digest) -> Digesting<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    if response.headers().contains_key(ETAG) {
        let (response, validators) = stated(response);
        return Digesting::Done(response, validators);
    }
    let last_modified = last_modified(response.headers());
    let (parts, body) = response.into_parts();
    match collect_now(body, limit) {
        Ok(collected) => {
            let (response, validators) = digested(parts, collected, last_modified, digest);
            Digesting::Done(response, validators)
        }
        Err((reading, body)) => Digesting::Reading {
            parts,
            reading,
            body,
            last_modified,
            digest,
        },
    }
}

impl<B> Digesting<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    /// The response with its validators, once its body is read.
    async fn done(self) -> (Response<PolicyBody<B>>, StoredValidators) {
        match self {
            Self::Done(response, validators) => (response, validators),
            Self::Reading {
                parts,
                reading,
                body,
                last_modified,
                digest,
            } => digested(
                parts,
                collect_rest(reading, body).await,
                last_modified,
                digest,
            ),
        }
    }
}

/// The response rebuilt around what reading its body found, with the ETag digested from a
/// whole body.
fn digested<B>(
    mut parts: http::response::Parts,
    collected: Collected<B>,
    last_modified: Option<std::time::SystemTime>,
    digest: Digest,
) -> (Response<PolicyBody<B>>, StoredValidators) {
    let (body, etag) = match collected {
        Collected::Whole(bytes) if bytes.is_empty() && digest == Digest::UnlessEmpty => {
            (PolicyBody::full(bytes), None)
        }
        Collected::Whole(bytes) => {
            let tag = EntityTag::digest(&bytes);
            parts.headers.insert(ETAG, tag.to_header_value());
            (PolicyBody::full(bytes), Some(tag))
        }
        Collected::Partial {
            head,
            trailers,
            rest,
        } => (PolicyBody::resumed(head, trailers, rest), None),
        Collected::Failed(error) => {
            tracing::warn!(layer = "conditional", %error, "response body failed while digesting it");
            // What is left is an empty body: its announced length no longer holds.
            parts.headers.remove(http::header::CONTENT_LENGTH);
            (PolicyBody::empty(), None)
        }
    };
    (
        Response::from_parts(parts, body),
        StoredValidators {
            etag,
            last_modified,
        },
    )
}

/// The resource's validators for an update: the lookup's answer when there is one, else what
/// the store knows (`None`: not known, judged as a representation whose tags nobody knows; see
/// the module docs).
async fn current_validators(
    config: &Config,
    resource: &Resource,
    known: Option<StoredValidators>,
) -> Result<Option<Current>, crate::error::StoreError> {
    match &config.lookup {
        Some(lookup) => lookup(resource.clone()).await.map(Some),
        None => Ok(known.map(Current::Exists)),
    }
}

/// An update's preconditions judged against its resource. Missing, or not known: either way no
/// tag can match, so `If-Match` fails safe (412) and `If-None-Match: *` lets the handler create;
/// a `DELETE` or `PATCH` of what is known to be missing is the handler's 404, whatever its
/// preconditions.
fn judge(method: &Method, preconditions: &Preconditions, current: Option<&Current>) -> Evaluation {
    let validators = match current {
        Some(Current::Exists(v)) => Some(view(v)),
        _ => None,
    };
    let unconditional = (matches!(current, Some(Current::Missing))
        && matches!(*method, Method::DELETE | Method::PATCH))
    .then_some(StatusCode::NOT_FOUND);
    evaluate(method, preconditions, validators, unconditional)
}

/// The validators a 412 names: the current ones, or none.
fn named(current: Option<Current>) -> StoredValidators {
    match current {
        Some(Current::Exists(v)) => v,
        _ => StoredValidators::default(),
    }
}

fn view(validators: &StoredValidators) -> Validators<'_> {
    Validators {
        etag: validators.etag.as_ref(),
        last_modified: validators.last_modified,
    }
}

/// How many fields a read's answer gets at most: `ETag`, `Last-Modified` and the resource's
/// `Cache-Control`.
pub(crate) const ANSWER_FIELDS: usize = 3;

fn write_validators(headers: &mut HeaderMap, validators: &StoredValidators) {
    if let Some(tag) = &validators.etag {
        headers.insert(ETAG, tag.to_header_value());
    }
    if let Some(modified) = validators.last_modified
        && let Ok(value) = HeaderValue::from_str(&httpdate::fmt_http_date(modified))
    {
        headers.insert(LAST_MODIFIED, value);
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

/// The resource's write lock, ended when the request is dropped while holding it (the client
/// went away): the update may or may not have happened, so what was known is forgotten.
struct LockGuard<St: ValidatorStore> {
    store: St,
    resource: String,
    owner: Option<OwnerToken>,
    ttl: Duration,
}

impl<St: ValidatorStore> LockGuard<St> {
    /// Another request holds the lock: nothing of ours to release.
    fn disarm(&mut self) {
        self.owner = None;
    }

    async fn unlock(&mut self, update: Update) {
        let Some(owner) = self.owner.clone() else {
            return;
        };
        match self
            .store
            .unlock(&self.resource, &owner, &update, self.ttl)
            .await
        {
            Ok(true) => {}
            Ok(false) => tracing::warn!(layer = "conditional", resource = %self.resource,
                "the write lock's lease ended before the update did; raise the lease"),
            Err(error) => {
                tracing::warn!(layer = "conditional", backend = self.store.backend_name(),
                %error, "could not end a write lock; its lease will")
            }
        }
        self.owner = None;
    }
}

impl<St: ValidatorStore> Drop for LockGuard<St> {
    fn drop(&mut self) {
        let Some(owner) = self.owner.take() else {
            return;
        };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let (store, resource, ttl) =
                (self.store.clone(), mem::take(&mut self.resource), self.ttl);
            runtime.spawn(async move {
                let _ = store.unlock(&resource, &owner, &Update::Forget, ttl).await;
            });
        }
    }
}

fn precondition_failed(current: &StoredValidators) -> Rejection {
    let mut rejection = Rejection::new(
        StatusCode::PRECONDITION_FAILED,
        "precondition_failed",
        "The resource changed since you read it, does not exist, or its current ETag is not known here: read it again (GET) and retry with its ETag.",
    );
    write_validators(&mut rejection.headers, current);
    rejection
}

fn precondition_required() -> Rejection {
    crate::metrics::decision!("conditional", "precondition_required");
    Rejection::new(
        StatusCode::PRECONDITION_REQUIRED,
        "precondition_required",
        "This resource is updated only conditionally: send If-Match with the ETag you last read (or If-Unmodified-Since).",
    )
}

fn busy() -> Rejection {
    Rejection::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "resource_busy",
        "Another update of this resource is under way; retry shortly.",
    )
    .with_header(RETRY_AFTER, HeaderValue::from_static("1"))
}

fn unavailable() -> Rejection {
    Rejection::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "conditional_unavailable",
        "Conditional updates cannot be decided safely right now; retry shortly.",
    )
    .with_header(RETRY_AFTER, HeaderValue::from_static("1"))
}
