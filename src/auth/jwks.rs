//! Keys from a JWKS URL or an issuer's OIDC discovery document, cached and refreshed.
//!
//! - The cache lives as long as the response's `Cache-Control: max-age` says (within bounds); a
//!   background task refreshes it when it runs out, and a request that finds it stale starts a
//!   refresh too (the keys held keep serving meanwhile).
//! - A token naming an unknown `kid` triggers one refetch: concurrent requests wait for the same
//!   fetch, and a cooldown bounds how often unknown ids can make us fetch at all.
//! - A failed fetch keeps the keys we have. With no keys at all the layer answers 503, never
//!   "accept".
//! - Entries of unknown `kty`, encryption keys and symmetric keys are skipped; `jku` and `x5u` in
//!   token headers are never followed (the layer does not read them).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};
use std::time::Duration;

use bytes::BytesMut;
use jsonwebtoken::Algorithm;
use serde_json::Value;
use tokio::time::Instant;

use super::keys::{JwkPolicy, VerifyKey, read_jwk};
use crate::error::ConfigError;

/// Why a fetch of keys failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JwksError {
    /// The request failed: connection, TLS, timeout.
    #[error("fetching {url}: {source}")]
    Http {
        /// The URL fetched.
        url: String,
        /// The client's error.
        source: reqwest::Error,
    },
    /// The server answered something other than 2xx.
    #[error("fetching {url}: status {status}")]
    Status {
        /// The URL fetched.
        url: String,
        /// The status.
        status: u16,
    },
    /// The document exceeds the size bound.
    #[error("fetching {url}: the document exceeds {limit} bytes")]
    TooLarge {
        /// The URL fetched.
        url: String,
        /// The bound.
        limit: usize,
    },
    /// The document is not the JSON expected.
    #[error("fetching {url}: {reason}")]
    Document {
        /// The URL fetched.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The discovery document names another issuer (OIDC Discovery section 4.3).
    #[error("discovery for `{expected}` answered for issuer `{found}`")]
    IssuerMismatch {
        /// The issuer asked about.
        expected: String,
        /// The issuer the document names.
        found: String,
    },
    /// The JWKS holds no key this crate can verify with.
    #[error("{url} holds no usable signing key")]
    NoUsableKeys {
        /// The URL fetched.
        url: String,
    },
}

/// A cached, refreshed set of keys from a JWKS URL or OIDC discovery. Cheap to clone; clones
/// share the cache.
///
/// ```no_run
/// use api_policy::auth::{Jwks, JwtAuthLayer};
/// # fn main() -> Result<(), api_policy::ConfigError> {
/// let keys = Jwks::discover("https://login.example.com")
///     .cooldown(std::time::Duration::from_secs(10))
///     .build()?;
/// // Discovery also sets the issuer the layer checks.
/// let auth = JwtAuthLayer::builder().jwks(keys).audience(["my-api"]).build()?;
/// # let _ = auth; Ok(()) }
/// ```
#[derive(Clone)]
pub struct Jwks {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Jwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwks")
            .field("location", &self.shared.location)
            .field("fetches", &self.fetches())
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
enum Location {
    Url(String),
    Discovery {
        issuer: String,
        jwks_uri: Mutex<Option<String>>,
    },
}

#[derive(Debug, Clone, Copy)]
struct Settings {
    cooldown: Duration,
    default_ttl: Duration,
    min_ttl: Duration,
    max_ttl: Duration,
    max_bytes: usize,
    rsa_default: Algorithm,
}

/// The keys of one successful fetch.
#[derive(Debug)]
pub(crate) struct Snapshot {
    pub(crate) keys: Vec<VerifyKey>,
    /// Changes when the keys change, not on every fetch: what the token cache is tied to.
    pub(crate) epoch: u64,
    /// Changes on every successful fetch: how waiting requests see that a fetch happened.
    pub(crate) generation: u64,
    fingerprint: u64,
    expires_at: Instant,
}

struct Shared {
    location: Location,
    client: reqwest::Client,
    settings: Settings,
    current: RwLock<Option<Arc<Snapshot>>>,
    /// Held while fetching, so concurrent refetches become one.
    fetching: Arc<tokio::sync::Mutex<()>>,
    last_attempt: Mutex<Option<Instant>>,
    fetches: AtomicU64,
    refresher: AtomicBool,
}

impl Jwks {
    /// Keys from a JWKS document at `url`.
    pub fn from_url(url: impl Into<String>) -> JwksBuilder {
        JwksBuilder::new(LocationSpec::Url(url.into()))
    }

    /// Keys from the `jwks_uri` of the OIDC discovery document at
    /// `{issuer}/.well-known/openid-configuration`, whose `issuer` must equal `issuer`.
    pub fn discover(issuer: impl Into<String>) -> JwksBuilder {
        JwksBuilder::new(LocationSpec::Discovery(issuer.into()))
    }

    /// The issuer, for keys found by discovery.
    #[must_use]
    pub fn issuer(&self) -> Option<&str> {
        match &self.shared.location {
            Location::Discovery { issuer, .. } => Some(issuer),
            Location::Url(_) => None,
        }
    }

    /// How many fetches of the JWKS document have been attempted.
    #[must_use]
    pub fn fetches(&self) -> u64 {
        self.shared.fetches.load(Ordering::Relaxed)
    }

    /// Fetches the keys now (to warm the cache at start-up, say), returning how many were taken.
    ///
    /// # Errors
    /// A [`JwksError`]; the keys held before are kept.
    pub async fn refresh(&self) -> Result<usize, JwksError> {
        let _flight = self.shared.fetching.lock().await;
        self.fetch_and_store().await
    }

    /// The keys held now, if a fetch ever succeeded.
    pub(crate) fn snapshot(&self) -> Option<Arc<Snapshot>> {
        self.shared
            .current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Fetches again because a token named a key we do not hold (or we hold none), unless another
    /// request's fetch finished since the keys of generation `seen_generation` (0: none) were read, or the cooldown since the last attempt has
    /// not passed. Concurrent callers share one fetch.
    pub(crate) async fn refetch(&self, seen_generation: u64) -> Option<Arc<Snapshot>> {
        let jwks = self.clone();
        let fetch = async move {
            let _flight = jwks.shared.fetching.lock().await;
            let current = jwks.snapshot();
            if current.as_ref().map_or(0, |s| s.generation) != seen_generation
                || jwks.cooling_down()
            {
                return;
            }
            if let Err(error) = jwks.fetch_and_store().await {
                tracing::warn!(layer = "jwt_auth", backend = "jwks", %error, "key refetch failed; keeping the keys held");
            }
        };
        // A task of its own: a client that hangs up (or an outer timeout) drops this request's
        // future, and must not cancel the fetch every waiting request depends on.
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                let _ = runtime.spawn(fetch).await;
            }
            Err(_) => fetch.await,
        }
        self.snapshot()
    }

    /// Starts a refresh in the background when the keys held have outlived their `max-age` and
    /// nobody is fetching: the request path's guarantee that `max-age` is honoured even if the
    /// refresher task is gone (its runtime shut down, say). The keys held keep serving meanwhile.
    pub(crate) fn refresh_if_stale(&self, snapshot: &Snapshot) {
        if snapshot.expires_at > Instant::now() || self.cooling_down() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let Ok(flight) = self.shared.fetching.clone().try_lock_owned() else {
            return;
        };
        let jwks = self.clone();
        runtime.spawn(async move {
            let _flight = flight;
            if let Err(error) = jwks.fetch_and_store().await {
                tracing::warn!(layer = "jwt_auth", backend = "jwks", %error, "key refresh failed; keeping the keys held");
            }
        });
    }

    /// How long requests should wait before keys might be fetched again.
    pub(crate) fn cooldown(&self) -> Duration {
        self.shared.settings.cooldown
    }

    fn cooling_down(&self) -> bool {
        let last = *self
            .shared
            .last_attempt
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        last.is_some_and(|at| at.elapsed() < self.shared.settings.cooldown)
    }

    /// One fetch; the caller holds `fetching`.
    async fn fetch_and_store(&self) -> Result<usize, JwksError> {
        let shared = &self.shared;
        shared.fetches.fetch_add(1, Ordering::Relaxed);
        let outcome = self.fetch_once().await;
        // The cooldown runs from the end of an attempt, so a slow fetch does not use it up.
        *shared
            .last_attempt
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
        outcome
    }

    async fn fetch_once(&self) -> Result<usize, JwksError> {
        let shared = &self.shared;
        let url = self.jwks_uri().await?;
        let (document, max_age) = get_json(&shared.client, &url, shared.settings.max_bytes).await?;
        let Some(entries) = document.get("keys").and_then(Value::as_array) else {
            return Err(JwksError::Document {
                url,
                reason: "no `keys` array".into(),
            });
        };
        let policy = JwkPolicy {
            symmetric: false,
            rsa_default: Some(shared.settings.rsa_default),
        };
        let mut keys = Vec::with_capacity(entries.len());
        let mut taken = Vec::with_capacity(entries.len());
        for entry in entries {
            match read_jwk(entry, policy) {
                Ok(key) => {
                    keys.push(key);
                    taken.push(entry.to_string());
                }
                Err(skipped) => tracing::debug!(
                    layer = "jwt_auth",
                    kid = entry.get("kid").and_then(|k| k.as_str()),
                    reason = %skipped.0,
                    "JWKS entry skipped"
                ),
            }
        }
        if keys.is_empty() {
            return Err(JwksError::NoUsableKeys { url });
        }
        taken.sort_unstable();
        let fingerprint = fingerprint(&taken);
        let settings = shared.settings;
        let ttl = max_age
            .unwrap_or(settings.default_ttl)
            .clamp(settings.min_ttl, settings.max_ttl);
        let count = keys.len();
        {
            let mut current = shared
                .current
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            let (generation, epoch) = match current.as_ref() {
                Some(old) if old.fingerprint == fingerprint => (old.generation + 1, old.epoch),
                Some(old) => (old.generation + 1, old.epoch + 1),
                None => (1, 1),
            };
            *current = Some(Arc::new(Snapshot {
                keys,
                epoch,
                generation,
                fingerprint,
                // A `max-age` beyond what an Instant can hold means "for as long as we run".
                expires_at: Instant::now()
                    .checked_add(ttl)
                    .unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400 * 365)),
            }));
        }
        self.start_refresher();
        Ok(count)
    }

    async fn jwks_uri(&self) -> Result<String, JwksError> {
        let (issuer, cached) = match &self.shared.location {
            Location::Url(url) => return Ok(url.clone()),
            Location::Discovery { issuer, jwks_uri } => (issuer, jwks_uri),
        };
        if let Some(uri) = cached
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
        {
            return Ok(uri);
        }
        let url = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let (document, _) =
            get_json(&self.shared.client, &url, self.shared.settings.max_bytes).await?;
        let found = document.get("issuer").and_then(Value::as_str).unwrap_or("");
        if found != issuer {
            return Err(JwksError::IssuerMismatch {
                expected: issuer.clone(),
                found: found.to_string(),
            });
        }
        let uri = document
            .get("jwks_uri")
            .and_then(Value::as_str)
            .ok_or_else(|| JwksError::Document {
                url: url.clone(),
                reason: "no `jwks_uri`".into(),
            })?
            .to_string();
        check_scheme(&uri, false).map_err(|e| JwksError::Document {
            url,
            reason: e.reason,
        })?;
        *cached.lock().unwrap_or_else(PoisonError::into_inner) = Some(uri.clone());
        Ok(uri)
    }

    /// Starts, once, the task that refreshes the keys before they expire. It holds the cache
    /// weakly and ends when the last [`Jwks`] clone is dropped.
    fn start_refresher(&self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.shared.refresher.swap(true, Ordering::AcqRel) {
            return;
        }
        let weak: Weak<Shared> = Arc::downgrade(&self.shared);
        runtime.spawn(async move {
            // If this task ends (its runtime shuts down), the next successful fetch starts another.
            let _running = RefresherGuard(weak.clone());
            loop {
                let wake = {
                    let Some(shared) = weak.upgrade() else { return };
                    let jwks = Jwks { shared };
                    let expires = jwks.snapshot().map(|s| s.expires_at);
                    match expires {
                        Some(at) if at > Instant::now() => at,
                        // After a failure: retry no faster than once a second, whatever the
                        // cooldown, so a dead provider is not hammered.
                        _ => Instant::now() + jwks.shared.settings.cooldown.max(Duration::from_secs(1)),
                    }
                };
                tokio::time::sleep_until(wake).await;
                let Some(shared) = weak.upgrade() else { return };
                let jwks = Jwks { shared };
                let _flight = jwks.shared.fetching.lock().await;
                if jwks.snapshot().is_some_and(|s| s.expires_at > Instant::now()) {
                    continue;
                }
                if let Err(error) = jwks.fetch_and_store().await {
                    tracing::warn!(layer = "jwt_auth", backend = "jwks", %error, "background key refresh failed; keeping the keys held");
                }
            }
        });
    }
}

/// Clears the refresher flag when the refresher task ends, however it ends.
struct RefresherGuard(Weak<Shared>);

impl Drop for RefresherGuard {
    fn drop(&mut self) {
        if let Some(shared) = self.0.upgrade() {
            shared.refresher.store(false, Ordering::Release);
        }
    }
}

fn fingerprint(entries: &[String]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    entries.hash(&mut hasher);
    hasher.finish()
}

/// GETs a JSON document of at most `limit` bytes, with its `Cache-Control: max-age`.
async fn get_json(
    client: &reqwest::Client,
    url: &str,
    limit: usize,
) -> Result<(Value, Option<Duration>), JwksError> {
    let http = |source| JwksError::Http {
        url: url.to_string(),
        source,
    };
    let mut response = client
        .get(url)
        .header(http::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(http)?;
    if !response.status().is_success() {
        return Err(JwksError::Status {
            url: url.to_string(),
            status: response.status().as_u16(),
        });
    }
    let max_age = response
        .headers()
        .get(http::header::CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
        .and_then(max_age);
    let mut body = BytesMut::new();
    while let Some(chunk) = response.chunk().await.map_err(http)? {
        if body.len() + chunk.len() > limit {
            return Err(JwksError::TooLarge {
                url: url.to_string(),
                limit,
            });
        }
        body.extend_from_slice(&chunk);
    }
    let document = serde_json::from_slice(&body).map_err(|e| JwksError::Document {
        url: url.to_string(),
        reason: e.to_string(),
    })?;
    Ok((document, max_age))
}

/// `max-age` of a `Cache-Control` value; `no-cache` and `no-store` count as zero.
fn max_age(cache_control: &str) -> Option<Duration> {
    let mut age = None;
    for directive in cache_control.split(',').map(str::trim) {
        let (name, value) = directive.split_once('=').unwrap_or((directive, ""));
        if name.eq_ignore_ascii_case("no-cache") || name.eq_ignore_ascii_case("no-store") {
            return Some(Duration::ZERO);
        }
        if name.eq_ignore_ascii_case("max-age") {
            age = value
                .trim_matches('"')
                .parse::<u64>()
                .ok()
                .map(Duration::from_secs);
        }
    }
    age
}

/// Keys fetched over plain HTTP can be replaced by anyone on the path, so only loopback
/// addresses may use it unless the builder allows it.
fn check_scheme(url: &str, allow_http: bool) -> Result<(), ConfigError> {
    let refuse = |reason: &str| Err(ConfigError::new("jwt.jwks", format!("`{url}`: {reason}")));
    let Ok(uri) = url.parse::<http::Uri>() else {
        return refuse("not a URL");
    };
    match uri.scheme_str() {
        Some("https") => Ok(()),
        Some("http") if allow_http => Ok(()),
        Some("http") => {
            let host = uri
                .host()
                .unwrap_or("")
                .trim_start_matches('[')
                .trim_end_matches(']');
            let loopback = host == "localhost"
                || host
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback());
            if loopback {
                Ok(())
            } else {
                refuse(
                    "keys over plain HTTP can be swapped in transit; use https (or allow_http for a trusted network)",
                )
            }
        }
        _ => refuse("not an http(s) URL"),
    }
}

/// Follows up to 5 redirects, but never from `https` to plain `http`: the scheme check on the
/// configured URL would mean nothing if the server could send us elsewhere in the clear.
fn no_downgrade() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let downgrade = attempt.url().scheme() == "http"
            && attempt.previous().iter().any(|u| u.scheme() == "https");
        if downgrade {
            attempt.error("refusing a redirect from https to http")
        } else if attempt.previous().len() > 5 {
            attempt.stop()
        } else {
            attempt.follow()
        }
    })
}

enum LocationSpec {
    Url(String),
    Discovery(String),
}

/// Configures a [`Jwks`].
#[must_use]
pub struct JwksBuilder {
    location: LocationSpec,
    settings: Settings,
    timeout: Duration,
    allow_http: bool,
    client: Option<reqwest::Client>,
}

impl std::fmt::Debug for JwksBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksBuilder")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl JwksBuilder {
    fn new(location: LocationSpec) -> Self {
        Self {
            location,
            settings: Settings {
                cooldown: Duration::from_secs(10),
                default_ttl: Duration::from_secs(300),
                min_ttl: Duration::from_secs(30),
                max_ttl: Duration::from_secs(86_400),
                max_bytes: 256 * 1024,
                rsa_default: Algorithm::RS256,
            },
            timeout: Duration::from_secs(5),
            allow_http: false,
            client: None,
        }
    }

    /// The least time between two fetches caused by unknown `kid`s or failures (default 10 s),
    /// counted from the end of the last attempt. Zero lets every unknown `kid` fetch (tests);
    /// background retries after a failure wait at least a second regardless.
    pub fn cooldown(mut self, cooldown: Duration) -> Self {
        self.settings.cooldown = cooldown;
        self
    }

    /// How long keys are kept when the response has no `max-age` (default 5 min).
    pub fn default_ttl(mut self, ttl: Duration) -> Self {
        self.settings.default_ttl = ttl;
        self
    }

    /// Bounds on a response's `max-age` (default 30 s to 24 h).
    pub fn ttl_bounds(mut self, min: Duration, max: Duration) -> Self {
        self.settings.min_ttl = min;
        self.settings.max_ttl = max;
        self
    }

    /// The time a fetch may take (default 5 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The largest document read (default 256 KiB).
    pub fn max_bytes(mut self, max_bytes: usize) -> Self {
        self.settings.max_bytes = max_bytes;
        self
    }

    /// The algorithm of RSA keys published without `alg` (default `RS256`).
    pub fn rsa_algorithm(mut self, algorithm: Algorithm) -> Self {
        self.settings.rsa_default = algorithm;
        self
    }

    /// Allows plain `http://` URLs beyond loopback. Anyone on the path could then swap the keys.
    pub fn allow_http(mut self) -> Self {
        self.allow_http = true;
        self
    }

    /// Uses this HTTP client (proxies, custom roots); its own timeout applies.
    pub fn client(mut self, client: reqwest::Client) -> Self {
        self.client = Some(client);
        self
    }

    /// Builds the cache. Nothing is fetched until the first request needs keys, or
    /// [`Jwks::refresh`].
    ///
    /// # Errors
    /// A [`ConfigError`] for a URL that is not `https` (or loopback `http`), an RSA default that
    /// is not `RS*`/`PS*`, inverted TTL bounds, or an HTTP client that cannot be built.
    pub fn build(self) -> Result<Jwks, ConfigError> {
        let settings = self.settings;
        if settings.min_ttl > settings.max_ttl {
            return Err(ConfigError::new(
                "jwt.jwks.ttl",
                "the minimum exceeds the maximum",
            ));
        }
        if settings.rsa_default.family() != jsonwebtoken::AlgorithmFamily::Rsa {
            return Err(ConfigError::new(
                "jwt.jwks.rsa_algorithm",
                format!("{:?} is not an RSA algorithm", settings.rsa_default),
            ));
        }
        let location = match self.location {
            LocationSpec::Url(url) => {
                check_scheme(&url, self.allow_http)?;
                Location::Url(url)
            }
            LocationSpec::Discovery(issuer) => {
                check_scheme(&issuer, self.allow_http)?;
                Location::Discovery {
                    issuer,
                    jwks_uri: Mutex::new(None),
                }
            }
        };
        let client = match self.client {
            Some(client) => client,
            None => reqwest::Client::builder()
                .timeout(self.timeout)
                .redirect(no_downgrade())
                .build()
                .map_err(|e| ConfigError::new("jwt.jwks", format!("HTTP client: {e}")))?,
        };
        Ok(Jwks {
            shared: Arc::new(Shared {
                location,
                client,
                settings,
                current: RwLock::new(None),
                fetching: Arc::new(tokio::sync::Mutex::new(())),
                last_attempt: Mutex::new(None),
                fetches: AtomicU64::new(0),
                refresher: AtomicBool::new(false),
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_age_is_read_and_no_cache_means_zero() {
        assert_eq!(
            max_age("public, max-age=600"),
            Some(Duration::from_secs(600))
        );
        assert_eq!(
            max_age("max-age=\"60\", must-revalidate"),
            Some(Duration::from_secs(60))
        );
        assert_eq!(max_age("no-store"), Some(Duration::ZERO));
        assert_eq!(max_age("private"), None);
        assert_eq!(max_age("max-age=soon"), None);
    }

    #[test]
    fn plain_http_is_for_loopback_only() {
        assert!(check_scheme("https://idp.example/jwks", false).is_ok());
        assert!(check_scheme("http://127.0.0.1:8080/jwks", false).is_ok());
        assert!(check_scheme("http://[::1]:8080/jwks", false).is_ok());
        assert!(check_scheme("http://localhost/jwks", false).is_ok());
        assert!(check_scheme("http://idp.example/jwks", false).is_err());
        assert!(check_scheme("http://idp.example/jwks", true).is_ok());
        assert!(check_scheme("ftp://idp.example/jwks", true).is_err());
    }
}
