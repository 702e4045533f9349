//! [`JwtAuthLayer`] and its configuration.

use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::Algorithm;
use serde::de::DeserializeOwned;
use tower_layer::Layer;

use super::cache::VerifiedCache;
use super::challenge::is_valid_realm;
use super::claims::{ClaimNames, ClaimsType, RawClaims};
#[cfg(feature = "jwks")]
use super::jwks::Jwks;
use super::keys::VerifyKey;
use super::policy::Config;
use super::require::{Denials, Require};
use super::revocation::{DynRevocation, RevocationStore};
use super::service::JwtAuth;
use super::token::TokenSource;
use crate::clock::{Clock, SharedClock, SystemClock};
use crate::error::{ConfigError, FailurePolicy, StoreError};
use crate::rejection::{RenderRejection, SharedRenderer};
use crate::route::RouteMatcher;

/// Every algorithm this layer can verify; the default allowlist is narrowed to the keys given.
const ALL: [Algorithm; 12] = [
    Algorithm::HS256,
    Algorithm::HS384,
    Algorithm::HS512,
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// Authenticates requests by JWT bearer token; see the [module docs](super).
///
/// Cheap to clone: clones share the configuration, the key cache and the verified-token cache.
#[derive(Clone)]
#[must_use]
pub struct JwtAuthLayer {
    config: Arc<Config>,
}

impl std::fmt::Debug for JwtAuthLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtAuthLayer")
            .field("algorithms", &self.config.algorithms)
            .field("keys", &self.config.keys)
            .field("realm", &self.config.denials.realm)
            .finish_non_exhaustive()
    }
}

impl JwtAuthLayer {
    /// Starts configuring the layer.
    pub fn builder() -> JwtAuthBuilder {
        JwtAuthBuilder::default()
    }

    /// Revokes a token by its `jti` until its `exp` (Unix seconds), in the configured store. The
    /// token is refused from its next request on, cached or not.
    ///
    /// # Errors
    /// [`StoreError::Invalid`] when no revocation store is configured; the store's error
    /// otherwise.
    pub async fn revoke(&self, jti: &str, expires_at: u64) -> Result<(), StoreError> {
        let Some(store) = &self.config.revocation else {
            return Err(
                ConfigError::new("jwt.revocation", "no revocation store is configured").into(),
            );
        };
        store.revoke(jti.to_string(), expires_at).await
    }

    /// How many verified tokens are cached now.
    #[must_use]
    pub fn cached_tokens(&self) -> usize {
        self.config.cache.as_ref().map_or(0, VerifiedCache::len)
    }
}

impl<S> Layer<S> for JwtAuthLayer {
    type Service = JwtAuth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        JwtAuth::new(inner, self.config.clone())
    }
}

/// Configures a [`JwtAuthLayer`].
#[must_use]
pub struct JwtAuthBuilder {
    keys: Vec<VerifyKey>,
    #[cfg(feature = "jwks")]
    jwks: Option<Jwks>,
    algorithms: Option<Vec<Algorithm>>,
    issuers: Option<Vec<String>>,
    audiences: Option<Vec<String>>,
    leeway: Duration,
    require_exp: bool,
    max_lifetime: Option<Duration>,
    typ: Option<String>,
    required_claims: Vec<String>,
    names: ClaimNames,
    claims_type: ClaimsType,
    cookie: Option<String>,
    max_token_len: usize,
    optional: bool,
    routes: Vec<(String, Require)>,
    revocation: Option<Arc<dyn DynRevocation>>,
    revocation_failure: FailurePolicy,
    cache_size: usize,
    clock: Option<SharedClock>,
    realm: String,
    renderer: SharedRenderer,
}

impl Default for JwtAuthBuilder {
    fn default() -> Self {
        Self {
            keys: Vec::new(),
            #[cfg(feature = "jwks")]
            jwks: None,
            algorithms: None,
            issuers: None,
            audiences: None,
            leeway: Duration::ZERO,
            require_exp: true,
            max_lifetime: None,
            typ: None,
            required_claims: Vec::new(),
            names: ClaimNames::default(),
            claims_type: ClaimsType::of::<RawClaims>(),
            cookie: None,
            max_token_len: 8 * 1024,
            optional: false,
            routes: Vec::new(),
            revocation: None,
            revocation_failure: FailurePolicy::Closed,
            cache_size: 10_000,
            clock: None,
            realm: "api".into(),
            renderer: SharedRenderer::default(),
        }
    }
}

impl std::fmt::Debug for JwtAuthBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtAuthBuilder")
            .field("keys", &self.keys)
            .field("issuers", &self.issuers)
            .field("audiences", &self.audiences)
            .finish_non_exhaustive()
    }
}

impl JwtAuthBuilder {
    /// Adds a static verification key.
    pub fn key(mut self, key: VerifyKey) -> Self {
        self.keys.push(key);
        self
    }

    /// Adds keys from a JWKS URL or OIDC discovery. Discovery also sets the issuer to check,
    /// unless [`issuer`](Self::issuer) names one.
    #[cfg(feature = "jwks")]
    pub fn jwks(mut self, jwks: Jwks) -> Self {
        self.jwks = Some(jwks);
        self
    }

    /// The algorithms accepted (default: those of the keys given; with a JWKS, every asymmetric
    /// one). A token of any other algorithm, `none` included, is refused before any key is tried.
    pub fn algorithms(mut self, algorithms: impl IntoIterator<Item = Algorithm>) -> Self {
        self.algorithms = Some(algorithms.into_iter().collect());
        self
    }

    /// The issuers accepted (`iss`, exact match). Required: name one, or call
    /// [`any_issuer`](Self::any_issuer) knowingly.
    pub fn issuer<I, T>(mut self, issuers: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.issuers = Some(issuers.into_iter().map(Into::into).collect());
        self
    }

    /// Accepts tokens from any issuer the keys verify.
    pub fn any_issuer(mut self) -> Self {
        self.issuers = Some(Vec::new());
        self
    }

    /// The audiences accepted (`aud`: one of these must appear). Required: name one, or call
    /// [`any_audience`](Self::any_audience) knowingly; a token minted for another API is
    /// otherwise accepted here.
    pub fn audience<I, T>(mut self, audiences: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.audiences = Some(audiences.into_iter().map(Into::into).collect());
        self
    }

    /// Accepts tokens for any audience.
    pub fn any_audience(mut self) -> Self {
        self.audiences = Some(Vec::new());
        self
    }

    /// Clock skew tolerated on `exp` and `nbf` (default 0).
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// Accepts tokens without `exp` (default: refused).
    pub fn allow_no_expiry(mut self) -> Self {
        self.require_exp = false;
        self
    }

    /// Refuses tokens whose lifetime (`exp - iat`) exceeds `max`, and tokens without `iat`.
    pub fn max_lifetime(mut self, max: Duration) -> Self {
        self.max_lifetime = Some(max);
        self
    }

    /// Requires the header `typ` to be this (e.g. `at+jwt` for RFC 9068 access tokens; the
    /// `application/` prefix and case are ignored).
    pub fn typ(mut self, typ: impl Into<String>) -> Self {
        self.typ = Some(typ.into());
        self
    }

    /// Claims every token must carry (e.g. `jti` when revocation must always be possible).
    pub fn required_claims<I, T>(mut self, claims: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.required_claims
            .extend(claims.into_iter().map(Into::into));
        self
    }

    /// Which claims fill the principal.
    pub fn claim_names(mut self, names: ClaimNames) -> Self {
        self.names = names;
        self
    }

    /// Deserialises the claims into `T`, put in the request extensions as
    /// [`Claims<T>`](super::Claims) (default [`RawClaims`]). A token whose claims do not fit `T`
    /// is refused.
    pub fn claims<T: DeserializeOwned + Send + Sync + 'static>(mut self) -> Self {
        self.claims_type = ClaimsType::of::<T>();
        self
    }

    /// Also reads the token from this cookie when no `Authorization: Bearer` header is sent.
    pub fn cookie(mut self, name: impl Into<String>) -> Self {
        self.cookie = Some(name.into());
        self
    }

    /// The longest token read (default 8 KiB); longer is 400 `invalid_request`.
    pub fn max_token_len(mut self, bytes: usize) -> Self {
        self.max_token_len = bytes;
        self
    }

    /// Lets requests without a token through as an anonymous principal (routes can still
    /// [`require`](Self::route) more). A token that is sent must still be valid.
    pub fn optional(mut self) -> Self {
        self.optional = true;
        self
    }

    /// What requests matching `pattern` require (see [`RoutePattern`](crate::route::RoutePattern));
    /// the first matching rule wins, and unmatched requests need a valid token (or nothing, when
    /// [`optional`](Self::optional)).
    pub fn route(mut self, pattern: &str, require: Require) -> Self {
        self.routes.push((pattern.to_string(), require));
        self
    }

    /// Checks every token's `jti` against this deny list (when the token has one).
    pub fn revocation(mut self, store: impl RevocationStore) -> Self {
        self.revocation = Some(Arc::new(store));
        self
    }

    /// What happens when the revocation store cannot answer (default
    /// [`FailurePolicy::Closed`]: 503 `auth_unavailable`).
    pub fn on_revocation_error(mut self, policy: FailurePolicy) -> Self {
        self.revocation_failure = policy;
        self
    }

    /// Caches up to `entries` verified tokens (default 10 000; 0 turns the cache off).
    pub fn cache_verified(mut self, entries: usize) -> Self {
        self.cache_size = entries;
        self
    }

    /// The clock for `exp`, `nbf` and the cache (default: the system clock).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// The `realm` of the challenges (default `api`).
    pub fn realm(mut self, realm: impl Into<String>) -> Self {
        self.realm = realm.into();
        self
    }

    /// Renders refusals (default: problem+json, or trailers-only gRPC).
    pub fn renderer(mut self, renderer: impl RenderRejection) -> Self {
        self.renderer = SharedRenderer::new(renderer);
        self
    }

    /// Builds the layer.
    ///
    /// # Errors
    /// A [`ConfigError`] for: no keys; an issuer or audience neither named nor waived; an empty
    /// allowlist, or a static key whose algorithm it leaves out; a realm that cannot be quoted;
    /// a bad route pattern.
    pub fn build(self) -> Result<JwtAuthLayer, ConfigError> {
        #[cfg(feature = "jwks")]
        let has_jwks = self.jwks.is_some();
        #[cfg(not(feature = "jwks"))]
        let has_jwks = false;
        if self.keys.is_empty() && !has_jwks {
            return Err(ConfigError::new("jwt.keys", "no keys: add a key or a JWKS"));
        }
        #[cfg(feature = "jwks")]
        let issuers = self.issuers.or_else(|| {
            self.jwks
                .as_ref()
                .and_then(Jwks::issuer)
                .map(|i| vec![i.to_string()])
        });
        #[cfg(not(feature = "jwks"))]
        let issuers = self.issuers;
        let issuers = issuers.ok_or_else(|| {
            ConfigError::new(
                "jwt.issuer",
                "name the trusted issuer, or call any_issuer()",
            )
        })?;
        let audiences = self.audiences.ok_or_else(|| {
            ConfigError::new(
                "jwt.audience",
                "name this API's audience, or call any_audience()",
            )
        })?;
        let algorithms = match self.algorithms {
            Some(list) => list,
            None => ALL
                .iter()
                .copied()
                .filter(|a| {
                    self.keys.iter().any(|k| k.algorithm() == *a)
                        || (has_jwks && a.family() != jsonwebtoken::AlgorithmFamily::Hmac)
                })
                .collect(),
        };
        if algorithms.is_empty() {
            return Err(ConfigError::new("jwt.algorithms", "the allowlist is empty"));
        }
        if let Some(key) = self
            .keys
            .iter()
            .find(|k| !algorithms.contains(&k.algorithm()))
        {
            return Err(ConfigError::new(
                "jwt.algorithms",
                format!(
                    "key {:?} verifies {:?}, which the allowlist leaves out",
                    key.kid(),
                    key.algorithm()
                ),
            ));
        }
        if !is_valid_realm(&self.realm) {
            return Err(ConfigError::new(
                "jwt.realm",
                "a realm must be printable ASCII without quotes or backslashes",
            ));
        }
        let mut routes = RouteMatcher::new();
        for (pattern, require) in self.routes {
            routes = routes.add(&pattern, require)?;
        }
        let config = Config {
            keys: self.keys,
            #[cfg(feature = "jwks")]
            jwks: self.jwks,
            algorithms,
            issuers,
            audiences,
            leeway: self.leeway.as_secs(),
            require_exp: self.require_exp,
            max_lifetime: self.max_lifetime.map(|d| d.as_secs()),
            typ: self.typ,
            required_claims: self.required_claims,
            names: self.names,
            claims_type: self.claims_type,
            source: TokenSource {
                cookie: self.cookie.map(String::into_boxed_str),
                max_len: self.max_token_len,
            },
            default_rule: if self.optional {
                Require::nothing()
            } else {
                Require::token()
            },
            routes,
            revocation: self.revocation,
            revocation_failure: self.revocation_failure,
            cache: match self.cache_size {
                0 => None,
                size => Some(VerifiedCache::new(size).ok_or_else(|| {
                    ConfigError::new(
                        "jwt.cache",
                        "no system randomness for the cache's digest key",
                    )
                })?),
            },
            clock: self.clock.unwrap_or_else(|| Arc::new(SystemClock)),
            denials: Arc::new(Denials {
                renderer: self.renderer,
                realm: self.realm.into(),
            }),
        };
        Ok(JwtAuthLayer {
            config: Arc::new(config),
        })
    }
}
