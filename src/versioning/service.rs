//! [`Versioning`]: the service the layer wraps around yours.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::header::{CACHE_CONTROL, LINK, RETRY_AFTER, VARY};
use http::{HeaderValue, Request, Response, StatusCode};
use tower_service::Service;

use super::deprecation::Gone;
use super::policy::{Announcement, Config, Explicit, VersionStatus};
use super::resolve::{self, Source};
use super::store::VersionPinStore;
use super::version::ApiVersion;
use crate::body::PolicyBody;
use crate::clock::day_of;
use crate::error::StoreError;
use crate::kit::{Gate, Nothing, PolicyFuture, policy_future, store_failed};
use crate::rejection::{Rejection, RejectionContext};

/// The versioning service; built by [`VersioningLayer`](super::VersioningLayer).
#[derive(Debug, Clone)]
pub struct Versioning<St, S> {
    inner: S,
    store: St,
    config: Arc<Config>,
}

impl<St, S> Versioning<St, S> {
    pub(crate) fn new(inner: S, store: St, config: Arc<Config>) -> Self {
        Self {
            inner,
            store,
            config,
        }
    }
}

policy_future! {
    /// The response future of [`Versioning`].
    pub struct ResponseFuture<S, ReqBody, B, St> = PolicyFuture<S, ReqBody, B, Resolving<St>, Nothing>;
    where [S: Service<Request<ReqBody>>, St: VersionPinStore]
    polls where [S: Service<Request<ReqBody>, Response = Response<B>>, St: VersionPinStore]
}

/// The version of a request the layer resolved, in its request extensions beside the
/// [`ApiVersion`]: where it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VersionSource(pub Source);

/// A pin lookup in flight, with what is needed to decide once it answers.
pub(crate) struct Resolving<St> {
    config: Arc<Config>,
    store: St,
    caller: String,
}

impl<St: VersionPinStore> Gate for Resolving<St> {
    type Verdict = Result<ApiVersion, StoreError>;
    /// The echo value, the deprecation headers, the configuration (its `Vary` values), and
    /// whether the version came from the caller's pin.
    type Stamp = (HeaderValue, Option<Announcement>, Arc<Config>, bool);

    fn admit<S, ReqBody, B, T>(
        self,
        verdict: Self::Verdict,
        inner: &mut S,
        request: Request<ReqBody>,
    ) -> PolicyFuture<S, ReqBody, B, Self, T>
    where
        S: Service<Request<ReqBody>>,
    {
        let (version, source) = match verdict {
            Ok(version) => (version, Source::Pin),
            Err(error) => {
                let backend = self.store.backend_name();
                let policy = store_failed(
                    "versioning",
                    backend,
                    &error,
                    self.config.on_store_error,
                    None,
                );
                if policy == crate::FailurePolicy::Closed {
                    let rejection = Rejection::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "versioning_unavailable",
                        "Your pinned API version cannot be read right now; retry shortly, or name a version.",
                    )
                    .with_header(RETRY_AFTER, HeaderValue::from_static("1"));
                    return PolicyFuture::answer(self.config.renderer.respond(
                        cacheable_as_refused(rejection, &self.config),
                        &RejectionContext::of(&request),
                    ));
                }
                (self.config.default, Source::Default)
            }
        };
        decide(
            version,
            source,
            inner,
            request,
            &self.config,
            &self.store,
            Some(self.caller),
        )
    }

    /// Writes at most [`ANSWER_FIELDS`] fields.
    fn stamp<B>((echo, announcement, config, pinned): Self::Stamp, response: &mut Response<B>) {
        let headers = response.headers_mut();
        // The version depended on who asked: no shared cache may hand this answer to another.
        if pinned && !headers.contains_key(CACHE_CONTROL) {
            headers.insert(CACHE_CONTROL, HeaderValue::from_static("private"));
        }
        if let Some(name) = &config.echo {
            headers.insert(name.clone(), echo);
        }
        for value in &config.vary {
            headers.append(VARY, value.clone());
        }
        for (name, value) in announcement.iter().flat_map(|a| a.iter()) {
            headers.append(name.clone(), value.clone());
        }
    }
}

/// How many fields a versioned answer gets at most: `Cache-Control` (a pinned caller's), the
/// version's echo, `Vary`, and the announcement's `Deprecation`, `Sunset` and `Link`.
pub(crate) const ANSWER_FIELDS: usize = 6;

/// Where the version is served, refused, or what the request said that cannot be served.
fn decide<S, ReqBody, B, St, T>(
    version: ApiVersion,
    source: Source,
    inner: &mut S,
    mut request: Request<ReqBody>,
    config: &Arc<Config>,
    store: &St,
    caller: Option<String>,
) -> PolicyFuture<S, ReqBody, B, Resolving<St>, T>
where
    S: Service<Request<ReqBody>>,
    St: VersionPinStore,
{
    let refuse = |rejection: Rejection, request: &Request<ReqBody>| {
        crate::metrics::decision!("versioning", "gone");
        PolicyFuture::answer(config.renderer.respond(
            cacheable_as_refused(rejection, config),
            &RejectionContext::of(request),
        ))
    };
    let now = UNIX_EPOCH + Duration::from_micros(config.clock.now_micros());
    let deprecation = match config.versions.get(&version) {
        None => {
            return refuse(
                gone(
                    Subject::Version(version),
                    "version_unknown",
                    config.migration_link.as_deref(),
                    None,
                ),
                &request,
            );
        }
        Some(VersionStatus::Retired { link }) => {
            let link = link.as_deref().or(config.migration_link.as_deref());
            return refuse(
                gone(Subject::Version(version), "version_retired", link, None),
                &request,
            );
        }
        Some(VersionStatus::Current) => None,
        Some(VersionStatus::Deprecated(d)) => Some(d),
    };
    let route = config
        .routes
        .find(request.method(), request.uri().path())
        .map(|hit| hit.value);
    let of_version = deprecation.map(|d| (d, Subject::Version(version)));
    let of_route = route.map(|(d, _)| (d, Subject::Route));
    for (d, subject) in of_version.into_iter().chain(of_route) {
        let rejection = match d.refusal_at(now) {
            Some(Gone::Sunset) => gone(subject, "version_sunset", d.migration_link(), None),
            Some(Gone::Brownout { until }) => gone(
                subject,
                "version_brownout",
                d.migration_link(),
                Some(until.duration_since(now).unwrap_or_default()),
            ),
            None => continue,
        };
        return refuse(rejection, &request);
    }
    let Some((echo, announcement)) = config.served.get(&version).cloned() else {
        return refuse(
            gone(
                Subject::Version(version),
                "version_unknown",
                config.migration_link.as_deref(),
                None,
            ),
            &request,
        );
    };
    let announcement = announcement.or_else(|| route.map(|(_, a)| a.clone()));
    let version_deprecated = deprecation.is_some_and(|d| d.in_effect(now));
    if version_deprecated || route.is_some_and(|(d, _)| d.in_effect(now)) {
        let caller = caller.unwrap_or_else(|| {
            config
                .extractor
                .identify(request.headers(), request.extensions())
                .map_or_else(|| "anonymous".to_string(), |c| c.key())
        });
        tracing::info!(target: "api_policy::deprecation", version = %version, caller = %caller,
            method = %request.method(), path = request.uri().path(), "deprecated API called");
        if version_deprecated {
            record(store, version, caller, now);
        }
    }
    if version_deprecated {
        crate::metrics::decision!("versioning", "deprecated");
    } else {
        crate::metrics::decision!("versioning", "served");
    }
    request.extensions_mut().insert(version);
    request.extensions_mut().insert(VersionSource(source));
    let pinned = source == Source::Pin;
    PolicyFuture::call(
        inner,
        request,
        Some((echo, announcement, config.clone(), pinned)),
    )
}

/// Counts the call without making the answer wait.
fn record<St: VersionPinStore>(store: &St, version: ApiVersion, caller: String, now: SystemTime) {
    let day = day_of(now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()));
    store.record_call_detached(version, caller, day);
}

/// What a refusal is about.
#[derive(Clone, Copy)]
enum Subject {
    Version(ApiVersion),
    Route,
}

impl std::fmt::Display for Subject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Subject::Version(v) => write!(f, "API version {v}"),
            Subject::Route => f.write_str("This endpoint"),
        }
    }
}

/// Refusals vary as answers do, and a 410 of a sunset or brownout must not outlive its time in a
/// cache (410 is cacheable by default).
fn cacheable_as_refused(mut rejection: Rejection, config: &Config) -> Rejection {
    if rejection.status != StatusCode::GONE {
        crate::metrics::decision!("versioning", "refused");
    }
    for value in &config.vary {
        rejection.headers.append(VARY, value.clone());
    }
    if rejection.status == StatusCode::GONE {
        rejection
            .headers
            .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    rejection
}

fn gone(
    subject: Subject,
    error: &'static str,
    link: Option<&str>,
    retry: Option<Duration>,
) -> Rejection {
    let what = match error {
        "version_sunset" => format!("{subject} was sunset and is no longer served."),
        "version_brownout" => format!(
            "{subject} is deprecated and is unavailable during a scheduled brownout; migrate before its sunset."
        ),
        "version_retired" => format!("{subject} is retired."),
        _ => format!("{subject} does not exist."),
    };
    let detail = match link {
        Some(link) => format!("{what} Migration guide: {link}"),
        None => what,
    };
    let mut rejection = Rejection::new(StatusCode::GONE, error, detail);
    if let Some(link) = link
        && let Ok(value) = HeaderValue::from_str(&format!("<{link}>; rel=\"deprecation\""))
    {
        rejection = rejection.with_header(LINK, value);
    }
    if let Some(retry) = retry
        && let Ok(value) = HeaderValue::from_str(&retry.as_secs().max(1).to_string())
    {
        rejection = rejection.with_header(RETRY_AFTER, value);
    }
    rejection
}

/// The version the request names, by path and explicit strategies; `None` when it names none.
/// Boxed refusals: they are rare, the common answer stays small.
fn named<B>(
    config: &Config,
    request: &Request<B>,
) -> Result<Option<(ApiVersion, Source)>, Box<Rejection>> {
    let malformed = |what: String| {
        Box::new(Rejection::new(
            StatusCode::BAD_REQUEST,
            "version_malformed",
            format!("{what} does not name an API version: use `v2`, or a date like `2024-04-10`."),
        ))
    };
    let path = config
        .path
        .then(|| resolve::from_path(request.uri().path()))
        .flatten();
    let mut explicit = None;
    for strategy in &config.explicit {
        let found = match strategy {
            Explicit::Header(name) => resolve::from_header(request.headers(), name)
                .map_err(|_| malformed(format!("The `{name}` header")))?
                .map(|v| (v, Source::Header)),
            Explicit::Accept(vendor) => resolve::from_accept(request.headers(), vendor)
                .map_err(|_| malformed("The vendor media type in `Accept`".to_string()))?
                .map(|v| (v, Source::Accept)),
        };
        if found.is_some() {
            explicit = found;
            break;
        }
    }
    match (explicit, path) {
        (Some((version, source)), Some(from_path)) => {
            // An unknown version goes on to its 410; a known one must revise the path's.
            if !config.versions.contains_key(&version)
                || (config.family(version).is_some()
                    && config.family(version) == config.family(from_path))
            {
                Ok(Some((version, source)))
            } else {
                Err(Box::new(Rejection::new(
                    StatusCode::BAD_REQUEST,
                    "version_conflict",
                    format!(
                        "The path names API version {from_path}, but the request asks for {version}, which is not a revision of it."
                    ),
                )))
            }
        }
        (Some(found), None) => Ok(Some(found)),
        (None, Some(from_path)) => Ok(Some((from_path, Source::Path))),
        (None, None) => Ok(None),
    }
}

impl<St, S, ReqBody, ResBody> Service<Request<ReqBody>> for Versioning<St, S>
where
    St: VersionPinStore,
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
{
    type Response = Response<PolicyBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody, ResBody, St>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let config = self.config.clone();
        let step = match named(&config, &request) {
            Err(rejection) => PolicyFuture::answer(config.renderer.respond(
                cacheable_as_refused(*rejection, &config),
                &RejectionContext::of(&request),
            )),
            Ok(Some((version, source))) => decide(
                version,
                source,
                &mut self.inner,
                request,
                &config,
                &self.store,
                None,
            ),
            Ok(None) => {
                let caller = config
                    .pins
                    .then(|| {
                        config
                            .extractor
                            .identify(request.headers(), request.extensions())
                    })
                    .flatten()
                    // Only principals are pinned: an IP address is not a client that agreed to
                    // a version, and pinning every address a spray of requests brings would
                    // grow the store without bound.
                    .filter(|c| c.principal().is_some_and(|p| !p.is_anonymous()))
                    .map(|c| c.key());
                match caller {
                    None => decide(
                        config.default,
                        Source::Default,
                        &mut self.inner,
                        request,
                        &config,
                        &self.store,
                        None,
                    ),
                    Some(caller) => {
                        let store = self.store.clone();
                        let (key, default, first_use) =
                            (caller.clone(), config.default, config.pin_on_first_use);
                        let check = Box::pin(async move {
                            if first_use {
                                store.pin_if_absent(&key, default).await
                            } else {
                                Ok(store.pinned(&key).await?.unwrap_or(default))
                            }
                        });
                        let gate = Resolving {
                            config,
                            store: self.store.clone(),
                            caller,
                        };
                        PolicyFuture::check(check, &mut self.inner, request, gate)
                    }
                }
            }
        };
        ResponseFuture::new(step)
    }
}
