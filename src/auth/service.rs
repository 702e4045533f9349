//! [`JwtAuth`]: the service the layer wraps around yours.

use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;

use super::cache::Verified;
use super::challenge::Failure;
use super::policy::Config;
use super::token::Found;
use super::verify::Outcome;
use crate::body::PolicyBody;
use crate::error::FailurePolicy;
use crate::kit::{BoxFuture, Gate, Nothing, PolicyFuture, policy_future, store_failed};
use crate::principal::Principal;
use crate::rejection::RejectionContext;

/// The authenticating service; built by [`JwtAuthLayer`](super::JwtAuthLayer).
#[derive(Clone)]
pub struct JwtAuth<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S: std::fmt::Debug> std::fmt::Debug for JwtAuth<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtAuth")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S> JwtAuth<S> {
    pub(crate) fn new(inner: S, config: Arc<Config>) -> Self {
        Self { inner, config }
    }
}

/// Who the request is from, once known: a verified token, or nobody (optional authentication).
type Identity = Result<Option<Arc<Verified>>, Failure>;

policy_future! {
    /// The response future of [`JwtAuth`]: key fetching or a revocation check when needed, then
    /// the inner service's call.
    pub struct ResponseFuture<S, ReqBody, B> = PolicyFuture<S, ReqBody, B, Authenticating, Nothing>;
    where [S: Service<Request<ReqBody>>]
    polls where [S: Service<Request<ReqBody>, Response = Response<B>>]
}

/// A request waiting to learn who is calling (keys being fetched, the revocation list asked).
struct Authenticating(Arc<Config>);

impl Gate for Authenticating {
    type Verdict = Identity;
    /// The principal, copied onto the response.
    type Stamp = Principal;

    fn admit<S, ReqBody, B, T>(
        self,
        verdict: Identity,
        inner: &mut S,
        request: Request<ReqBody>,
    ) -> PolicyFuture<S, ReqBody, B, Self, T>
    where
        S: Service<Request<ReqBody>>,
    {
        admit(verdict, inner, request, &self.0)
    }

    fn stamp<B>(principal: Principal, response: &mut Response<B>) {
        response.extensions_mut().insert(principal);
    }
}

/// The answer once the caller is known: the inner call, or a refusal.
fn admit<S, ReqBody, B, T>(
    identity: Identity,
    inner: &mut S,
    mut request: Request<ReqBody>,
    config: &Arc<Config>,
) -> PolicyFuture<S, ReqBody, B, Authenticating, T>
where
    S: Service<Request<ReqBody>>,
{
    let (verified, principal) = match identity {
        Ok(Some(verified)) => {
            let principal = verified.principal.clone();
            (Some(verified), principal)
        }
        Ok(None) => (None, Principal::anonymous("anonymous")),
        Err(failure) => return refuse(failure, None, &request, config),
    };
    let rule = config.rule_for(request.method(), request.uri().path());
    if let Err(failure) = rule.check(&principal) {
        return refuse(failure, Some(principal), &request, config);
    }
    let extensions = request.extensions_mut();
    if let Some(verified) = &verified {
        (config.claims_type.insert)(extensions, &verified.claims);
    }
    extensions.insert(principal.clone());
    extensions.insert(config.denials.clone());
    if verified.is_some() {
        crate::metrics::decision!("jwt_auth", "authenticated");
    } else {
        crate::metrics::decision!("jwt_auth", "anonymous");
    }
    PolicyFuture::call(inner, request, Some(principal))
}

/// The rendered refusal. A caller refused for want of privileges is known, and stays on the
/// response so the audit layer can record who was denied.
fn refuse<S, ReqBody, B, T>(
    failure: Failure,
    principal: Option<Principal>,
    request: &Request<ReqBody>,
    config: &Config,
) -> PolicyFuture<S, ReqBody, B, Authenticating, T>
where
    S: Service<Request<ReqBody>>,
{
    if let Failure::Unavailable { .. } = failure {
        tracing::warn!(layer = "jwt_auth", ?failure, "cannot authenticate");
    }
    let rejection = failure.rejection(&config.denials.realm);
    match rejection.status.as_u16() {
        400 => crate::metrics::decision!("jwt_auth", "malformed"),
        401 => crate::metrics::decision!("jwt_auth", "unauthenticated"),
        403 => crate::metrics::decision!("jwt_auth", "forbidden"),
        _ => crate::metrics::decision!("jwt_auth", "unavailable"),
    }
    let mut response = config
        .denials
        .renderer
        .respond(rejection, &RejectionContext::of(request));
    if let Some(principal) = principal.filter(|p| !p.is_anonymous()) {
        response.extensions_mut().insert(principal);
    }
    PolicyFuture::answer(response)
}

/// What the revocation list says of a verified token: known now, or a future.
enum Revoked {
    Now(Identity),
    Later(BoxFuture<Identity>),
}

fn check_revocation(config: &Arc<Config>, verified: Arc<Verified>) -> Revoked {
    let (Some(store), Some(jti)) = (&config.revocation, verified.jti.clone()) else {
        return Revoked::Now(Ok(Some(verified)));
    };
    if let Some(answer) = store.is_revoked_now(&jti) {
        return Revoked::Now(revocation_verdict(config, answer, verified));
    }
    let lookup = store.is_revoked(jti.to_string());
    let config = config.clone();
    Revoked::Later(Box::pin(async move {
        revocation_verdict(&config, lookup.await, verified)
    }))
}

fn revocation_verdict(
    config: &Config,
    answer: Result<bool, crate::StoreError>,
    verified: Arc<Verified>,
) -> Identity {
    match answer {
        Ok(false) => Ok(Some(verified)),
        Ok(true) => Err(Failure::invalid("The token has been revoked.")),
        Err(error) => {
            let backend = config.revocation.as_ref().map_or("", |s| s.backend_name());
            match store_failed("jwt_auth", backend, &error, config.revocation_failure, None) {
                FailurePolicy::Open => Ok(Some(verified)),
                _ => Err(Failure::Unavailable {
                    error: "auth_unavailable",
                    detail: "Token revocation cannot be checked right now; retry shortly.",
                    retry_after_secs: 1,
                }),
            }
        }
    }
}

/// Verification after fetching keys, then the revocation check: the slow path, owned.
#[cfg(feature = "jwks")]
async fn verify_after_fetch(config: Arc<Config>, token: Box<[u8]>, generation: u64) -> Identity {
    if let Some(jwks) = &config.jwks {
        jwks.refetch(generation).await;
    }
    let verified = match config.verify_now(&token, false) {
        Outcome::Done(result) => result?,
        Outcome::NeedKeys { .. } => {
            return Err(Failure::invalid("The token names an unknown key."));
        }
    };
    let identity = match check_revocation(&config, verified) {
        Revoked::Now(identity) => identity,
        Revoked::Later(future) => future.await,
    };
    forget_if_refused(&config, &token, &identity);
    identity
}

/// A revoked token leaves the verified-token cache when it is seen.
fn forget_if_refused(config: &Config, token: &[u8], identity: &Identity) {
    if identity.is_err()
        && let Some(cache) = &config.cache
    {
        cache.forget(token);
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for JwtAuth<S>
where
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
        let check: BoxFuture<Identity> = match config.source.find(request.headers()) {
            Found::Missing => return self.now(Ok(None), request),
            Found::Malformed(why) => return self.now(Err(Failure::Malformed(why)), request),
            Found::Token(token) => match config.verify_now(token, true) {
                Outcome::Done(Err(failure)) => return self.now(Err(failure), request),
                Outcome::Done(Ok(verified)) => match check_revocation(config, verified) {
                    Revoked::Now(identity) => {
                        forget_if_refused(config, token, &identity);
                        return self.now(identity, request);
                    }
                    Revoked::Later(future) => {
                        let (config, token) = (config.clone(), Box::<[u8]>::from(token));
                        Box::pin(async move {
                            let identity = future.await;
                            forget_if_refused(&config, &token, &identity);
                            identity
                        })
                    }
                },
                #[cfg(feature = "jwks")]
                Outcome::NeedKeys { generation } => {
                    Box::pin(verify_after_fetch(config.clone(), token.into(), generation))
                }
                #[cfg(not(feature = "jwks"))]
                Outcome::NeedKeys { .. } => {
                    return self.now(
                        Err(Failure::invalid("The token names an unknown key.")),
                        request,
                    );
                }
            },
        };
        let gate = Authenticating(self.config.clone());
        ResponseFuture::new(PolicyFuture::check(check, &mut self.inner, request, gate))
    }
}

impl<S> JwtAuth<S> {
    /// Decided without waiting: the ready inner service is called now, no clone needed.
    fn now<ReqBody, B>(
        &mut self,
        identity: Identity,
        request: Request<ReqBody>,
    ) -> ResponseFuture<S, ReqBody, B>
    where
        S: Service<Request<ReqBody>>,
    {
        ResponseFuture::new(admit(identity, &mut self.inner, request, &self.config))
    }
}
