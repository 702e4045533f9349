//! Who is calling: the [`Principal`], and the [`KeyExtractor`] that finds a caller for the policies
//! that count per caller (rate limits today; idempotency scopes and version pins later).
//!
//! A caller is found, in this order: a [`Principal`] that an earlier layer (JWT auth) put in the
//! request extensions; an API key header resolved to a principal; the client IP address, but only
//! when [`TrustedProxies`] are configured explicitly. An anonymous principal (what optional JWT
//! authentication inserts for a request without a token) is the last resort: an API key or a
//! trusted client IP tells anonymous callers apart, so they do not all share one bucket.
//!
//! # Security: client IP addresses
//! `X-Forwarded-For` is written by whoever sends the request, so it is never read unless the
//! immediate peer is one of the proxies you name. Keying by IP is opt-in: behind a load balancer the
//! peer address is the balancer's, and every client would share one bucket.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use http::{Extensions, HeaderMap, HeaderName};
use ipnet::IpNet;

use crate::error::ConfigError;

/// What kind of caller a [`Principal`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PrincipalKind {
    /// A person, or a token issued on a person's behalf.
    User,
    /// A machine client: an API key or a client-credentials token.
    Service,
    /// Nobody in particular: an unauthenticated caller.
    Anonymous,
}

/// An authenticated (or explicitly anonymous) caller.
///
/// Cheap to clone: one reference count for the whole. Its fields are those of
/// [`PrincipalFields`], read through it (`principal.id`, `principal.tier`); the builders set them.
#[derive(Clone, PartialEq, Eq)]
pub struct Principal(Arc<PrincipalFields>);

/// What a [`Principal`] is made of.
///
/// A principal is cloned by every layer that reads it, so its fields share one allocation and
/// one count rather than one count each.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PrincipalFields {
    /// Stable identifier: the token subject or the API key's id (never the secret key itself).
    pub id: Arc<str>,
    /// User, service or anonymous.
    pub kind: PrincipalKind,
    /// Plan or tier name that picks a rate-limit quota, e.g. `free` or `pro`.
    pub tier: Option<Arc<str>>,
    /// Granted scopes (OAuth `scope`/`scp`).
    pub scopes: Arc<[Arc<str>]>,
    /// Granted roles (a `roles` or `role` claim, or an API key's roles).
    pub roles: Arc<[Arc<str>]>,
    /// Session identifier, where the credential carries one.
    pub session_id: Option<Arc<str>>,
    /// The caller's storage key (`s:<id>`), made once with the principal: every rate-limit
    /// decision needs it, and an API key's or a cached token's principal serves many requests.
    storage_key: Arc<str>,
}

impl std::ops::Deref for Principal {
    type Target = PrincipalFields;

    fn deref(&self) -> &PrincipalFields {
        &self.0
    }
}

impl fmt::Debug for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The fields' own form: a field added there is never left out here.
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl Principal {
    fn new(id: impl Into<Arc<str>>, kind: PrincipalKind) -> Self {
        let id = id.into();
        let mut storage_key = String::with_capacity(2 + id.len());
        storage_key.push_str(kind_prefix(kind));
        storage_key.push_str(&id);
        Self(Arc::new(PrincipalFields {
            storage_key: storage_key.into(),
            id,
            kind,
            tier: None,
            scopes: Arc::from([]),
            roles: Arc::from([]),
            session_id: None,
        }))
    }

    /// The fields, to change; copied first only if another clone shares them.
    fn fields_mut(&mut self) -> &mut PrincipalFields {
        Arc::make_mut(&mut self.0)
    }

    /// A person.
    #[must_use]
    pub fn user(id: impl Into<Arc<str>>) -> Self {
        Self::new(id, PrincipalKind::User)
    }

    /// A machine client.
    #[must_use]
    pub fn service(id: impl Into<Arc<str>>) -> Self {
        Self::new(id, PrincipalKind::Service)
    }

    /// An unauthenticated caller, known only by `id` (for instance its IP address).
    #[must_use]
    pub fn anonymous(id: impl Into<Arc<str>>) -> Self {
        Self::new(id, PrincipalKind::Anonymous)
    }

    /// Sets the tier.
    #[must_use]
    pub fn with_tier(mut self, tier: impl Into<Arc<str>>) -> Self {
        self.fields_mut().tier = Some(tier.into());
        self
    }

    /// Sets the scopes.
    #[must_use]
    pub fn with_scopes<I, T>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<Arc<str>>,
    {
        self.fields_mut().scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the roles.
    #[must_use]
    pub fn with_roles<I, T>(mut self, roles: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<Arc<str>>,
    {
        self.fields_mut().roles = roles.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the session identifier.
    #[must_use]
    pub fn with_session(mut self, session_id: impl Into<Arc<str>>) -> Self {
        self.fields_mut().session_id = Some(session_id.into());
        self
    }

    /// Whether the principal holds `scope`.
    #[must_use]
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| &**s == scope)
    }

    /// Whether the principal holds `role`.
    #[must_use]
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| &**r == role)
    }

    /// Whether this is an anonymous caller.
    #[must_use]
    pub fn is_anonymous(&self) -> bool {
        self.kind == PrincipalKind::Anonymous
    }
}

/// The peer address of the connection, for stacks that are not axum (hyper, tonic).
///
/// Insert it into the request extensions when accepting the connection. With the `axum` feature,
/// axum's `ConnectInfo<SocketAddr>` is read as well.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr(pub SocketAddr);

/// Which proxies may speak for the client through `X-Forwarded-For`.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies {
    nets: Vec<IpNet>,
}

impl TrustedProxies {
    /// No proxies: the peer address is the client's.
    #[must_use]
    pub fn none() -> Self {
        Self::default()
    }

    /// Trusts `X-Forwarded-For` when the peer is within one of these networks (`10.0.0.0/8`,
    /// `192.0.2.7`, `::1/128`, ...).
    ///
    /// # Errors
    /// A [`ConfigError`] naming the entry that is neither an address nor a network.
    pub fn new<I, T>(proxies: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        let nets = proxies
            .into_iter()
            .map(|p| {
                let p = p.as_ref().trim();
                p.parse::<IpNet>()
                    .or_else(|_| p.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| {
                        ConfigError::new(
                            "trusted_proxies",
                            format!("`{p}` is not an IP address or network"),
                        )
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { nets })
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.nets.iter().any(|n| n.contains(&ip))
    }

    /// The client address: the peer, or, when the peer is a trusted proxy, the right-most
    /// `X-Forwarded-For` entry that is not itself a trusted proxy.
    ///
    /// Entries are read right to left because each proxy appends; what lies left of the first
    /// untrusted hop was written by the client and proves nothing. A malformed entry stops the walk
    /// at the last good hop, so garbage cannot choose the key.
    #[must_use]
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        // A dual-stack listener reports IPv4 peers as `::ffff:a.b.c.d`.
        let peer = peer.to_canonical();
        if !self.trusts(peer) {
            return peer;
        }
        let mut client = peer;
        let hops = headers
            .get_all("x-forwarded-for")
            .iter()
            .rev()
            .flat_map(|v| v.to_str().unwrap_or("!").rsplit(','));
        for hop in hops {
            match hop.trim().parse::<IpAddr>().map(|ip| ip.to_canonical()) {
                Ok(ip) => {
                    client = ip;
                    if !self.trusts(ip) {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
        client
    }
}

/// Turns an API key into the principal it belongs to.
///
/// Implemented for `HashMap<String, Principal>` and for closures `Fn(&str) -> Option<Principal>`.
pub trait ApiKeyResolver: Send + Sync + 'static {
    /// The principal owning `key`, or `None` for an unknown key.
    fn resolve(&self, key: &str) -> Option<Principal>;
}

impl<F> ApiKeyResolver for F
where
    F: Fn(&str) -> Option<Principal> + Send + Sync + 'static,
{
    fn resolve(&self, key: &str) -> Option<Principal> {
        self(key)
    }
}

impl<S> ApiKeyResolver for HashMap<String, Principal, S>
where
    S: std::hash::BuildHasher + Send + Sync + 'static,
{
    fn resolve(&self, key: &str) -> Option<Principal> {
        self.get(key).cloned()
    }
}

/// Keys longer than this are not looked up: no real key is this long, and hashing megabytes of
/// header per request is an attack.
pub(crate) const MAX_API_KEY_LEN: usize = 256;

/// A caller the [`KeyExtractor`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Caller {
    /// A principal: from the request extensions or an API key.
    Principal(Principal),
    /// An unauthenticated client known by its (trusted) IP address.
    Ip(IpAddr),
}

impl Caller {
    /// The caller's tier: the principal's, or `None` for an anonymous IP caller.
    #[must_use]
    pub fn tier(&self) -> Option<&str> {
        match self {
            Caller::Principal(p) => p.tier.as_deref(),
            Caller::Ip(_) => None,
        }
    }

    /// The principal, when the caller is one.
    #[must_use]
    pub fn principal(&self) -> Option<&Principal> {
        match self {
            Caller::Principal(p) => Some(p),
            Caller::Ip(_) => None,
        }
    }
}

impl Caller {
    /// The caller as a storage key: `u:<id>` (user), `s:<id>` (service), `a:<id>` (anonymous
    /// principal) or `ip:<address>`. The kind is part of the key, so a user whose subject happens
    /// to equal a service's id shares nothing with it.
    #[must_use]
    pub fn key(&self) -> String {
        self.key_ref().into_owned()
    }

    /// The [`key`](Self::key), borrowed where it can be: a principal's is made once, with the
    /// principal, so a decision per request costs no allocation for it.
    #[must_use]
    pub fn key_ref(&self) -> std::borrow::Cow<'_, str> {
        match self {
            Caller::Principal(p) => std::borrow::Cow::Borrowed(&p.storage_key),
            Caller::Ip(ip) => std::borrow::Cow::Owned(format!("ip:{ip}")),
        }
    }
}

fn kind_prefix(kind: PrincipalKind) -> &'static str {
    match kind {
        PrincipalKind::User => "u:",
        PrincipalKind::Service => "s:",
        PrincipalKind::Anonymous => "a:",
    }
}

/// Writes the caller as its storage [`key`](Caller::key).
impl fmt::Display for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.key_ref())
    }
}

/// Finds the caller of a request; see the [module docs](self) for the order.
///
/// ```
/// use api_policy::principal::{Caller, KeyExtractor, Principal, TrustedProxies};
/// use std::collections::HashMap;
///
/// let keys = HashMap::from([("k_live_1".to_string(), Principal::service("acme").with_tier("pro"))]);
/// let extractor = KeyExtractor::new()
///     .api_key_header("X-Api-Key", keys)?
///     .client_ip(TrustedProxies::none());
///
/// let req = http::Request::builder().header("x-api-key", "k_live_1").body(()).unwrap();
/// let caller = extractor.identify(req.headers(), req.extensions()).unwrap();
/// assert_eq!(caller.tier(), Some("pro"));
/// assert_eq!(caller.key(), "s:acme");
/// # Ok::<(), api_policy::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct KeyExtractor {
    api_key: Option<(HeaderName, Arc<dyn ApiKeyResolver>)>,
    client_ip: Option<TrustedProxies>,
    ipv6_prefix: u8,
}

impl Default for KeyExtractor {
    fn default() -> Self {
        Self {
            api_key: None,
            client_ip: None,
            ipv6_prefix: 64,
        }
    }
}

impl fmt::Debug for KeyExtractor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyExtractor")
            .field("api_key_header", &self.api_key.as_ref().map(|(h, _)| h))
            .field("client_ip", &self.client_ip)
            .field("ipv6_prefix", &self.ipv6_prefix)
            .finish()
    }
}

impl KeyExtractor {
    /// Finds principals in the request extensions only.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Also resolves an API key read from `header` (any case). An unknown key identifies nobody:
    /// the request falls through to the next source.
    ///
    /// # Errors
    /// A [`ConfigError`] when `header` is not a valid header name.
    pub fn api_key_header(
        mut self,
        header: &str,
        resolver: impl ApiKeyResolver,
    ) -> Result<Self, ConfigError> {
        let name =
            HeaderName::from_bytes(header.to_ascii_lowercase().as_bytes()).map_err(|_| {
                ConfigError::new("api_key_header", format!("`{header}` is not a header name"))
            })?;
        self.api_key = Some((name, Arc::new(resolver)));
        Ok(self)
    }

    /// How many leading bits of an IPv6 client address identify it (default 64): one host owns a
    /// whole /64, so keying by the full address would let it pick a fresh bucket per request.
    #[must_use]
    pub fn ipv6_prefix(mut self, bits: u8) -> Self {
        self.ipv6_prefix = bits.min(128);
        self
    }

    /// Also identifies callers by client IP address, with these proxies trusted.
    #[must_use]
    pub fn client_ip(mut self, proxies: TrustedProxies) -> Self {
        self.client_ip = Some(proxies);
        self
    }

    /// The caller of a request with these headers and extensions, if any source knows it.
    #[must_use]
    pub fn identify(&self, headers: &HeaderMap, extensions: &Extensions) -> Option<Caller> {
        let from_layer = extensions.get::<Principal>();
        if let Some(p) = from_layer.filter(|p| !p.is_anonymous()) {
            return Some(Caller::Principal(p.clone()));
        }
        // An anonymous principal (optional authentication let the request in) says nobody in
        // particular is calling: an API key or the client IP still tells callers apart.
        self.identify_without_principal(headers, extensions)
            .or_else(|| from_layer.cloned().map(Caller::Principal))
    }

    fn identify_without_principal(
        &self,
        headers: &HeaderMap,
        extensions: &Extensions,
    ) -> Option<Caller> {
        if let Some((name, resolver)) = &self.api_key {
            let key = headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .filter(|k| !k.is_empty() && k.len() <= MAX_API_KEY_LEN);
            if let Some(principal) = key.and_then(|k| resolver.resolve(k)) {
                return Some(Caller::Principal(principal));
            }
        }
        let proxies = self.client_ip.as_ref()?;
        let peer = peer_ip(extensions)?;
        Some(Caller::Ip(match proxies.client_ip(peer, headers) {
            IpAddr::V6(v6) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.ipv6_prefix))
                    .unwrap_or(0);
                IpAddr::V6((u128::from(v6) & mask).into())
            }
            v4 => v4,
        }))
    }
}

impl TrustedProxies {
    /// The client address of a request: its peer ([`PeerAddr`], or axum's `ConnectInfo`), or the
    /// address a trusted proxy in front of it names. `None` when the peer is unknown.
    #[must_use]
    pub fn client_of(&self, headers: &HeaderMap, extensions: &Extensions) -> Option<IpAddr> {
        peer_ip(extensions).map(|peer| self.client_ip(peer, headers))
    }
}

fn peer_ip(extensions: &Extensions) -> Option<IpAddr> {
    if let Some(PeerAddr(addr)) = extensions.get::<PeerAddr>() {
        return Some(addr.ip());
    }
    #[cfg(feature = "axum")]
    if let Some(info) = extensions.get::<axum::extract::ConnectInfo<SocketAddr>>() {
        return Some(info.0.ip());
    }
    None
}

/// In an axum handler, `Principal` requires a caller an earlier layer identified (401 problem
/// otherwise) and `Option<Principal>` accepts anonymous requests.
#[cfg(feature = "axum")]
mod axum_extractors {
    use std::convert::Infallible;

    use axum::extract::{FromRequestParts, OptionalFromRequestParts};
    use axum::response::Response;
    use http::StatusCode;
    use http::request::Parts;

    use super::Principal;
    use crate::rejection::{ProblemRenderer, Rejection, RejectionContext, RenderRejection};

    impl<S: Send + Sync> FromRequestParts<S> for Principal {
        type Rejection = Response;

        async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Response> {
            if let Some(principal) = parts.extensions.get::<Principal>() {
                return Ok(principal.clone());
            }
            let rejection = Rejection::new(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "This route needs an authenticated caller.",
            )
            .with_header(
                http::header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Bearer realm=\"api\""),
            );
            let context = RejectionContext {
                method: &parts.method,
                uri: &parts.uri,
                headers: &parts.headers,
            };
            Err(ProblemRenderer::new()
                .render(&rejection, &context)
                .map(axum::body::Body::from))
        }
    }

    impl<S: Send + Sync> OptionalFromRequestParts<S> for Principal {
        type Rejection = Infallible;

        async fn from_request_parts(
            parts: &mut Parts,
            _state: &S,
        ) -> Result<Option<Self>, Infallible> {
            Ok(parts.extensions.get::<Principal>().cloned())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clone_changed_by_a_builder_leaves_the_original_alone() {
        let original = Principal::user("u1")
            .with_tier("free")
            .with_roles(["nurse"]);
        let changed = original.clone().with_tier("pro");
        assert_eq!(original.tier.as_deref(), Some("free"));
        assert_eq!(changed.tier.as_deref(), Some("pro"));
        assert_eq!((&*changed.id, changed.has_role("nurse")), ("u1", true));
        assert_ne!(original, changed);
        assert_eq!(original, original.clone());
    }

    fn xff(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    #[test]
    fn forwarded_for_is_ignored_unless_the_peer_is_trusted() {
        let peer: IpAddr = "203.0.113.9".parse().unwrap();
        let headers = xff(&["1.2.3.4"]);
        assert_eq!(TrustedProxies::none().client_ip(peer, &headers), peer);
        let proxies = TrustedProxies::new(["10.0.0.0/8"]).unwrap();
        assert_eq!(proxies.client_ip(peer, &headers), peer);
    }

    #[test]
    fn forwarded_for_is_walked_right_to_left_past_trusted_hops() {
        let proxies = TrustedProxies::new(["10.0.0.0/8", "192.0.2.1"]).unwrap();
        let peer: IpAddr = "10.1.1.1".parse().unwrap();
        // The client forged 6.6.6.6; the real client is the first untrusted hop from the right.
        let headers = xff(&["6.6.6.6, 198.51.100.7", "192.0.2.1, 10.2.2.2"]);
        assert_eq!(
            proxies.client_ip(peer, &headers),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn malformed_forwarded_for_stops_at_the_last_good_hop() {
        let proxies = TrustedProxies::new(["10.0.0.0/8"]).unwrap();
        let peer: IpAddr = "10.1.1.1".parse().unwrap();
        let headers = xff(&["1.2.3.4, garbage, 10.3.3.3"]);
        assert_eq!(
            proxies.client_ip(peer, &headers),
            "10.3.3.3".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn bad_proxy_entries_are_a_config_error() {
        let err = TrustedProxies::new(["10.0.0.0/8", "not-an-ip"]).unwrap_err();
        assert!(err.to_string().contains("not-an-ip"), "{err}");
    }

    #[test]
    fn extension_principal_wins_over_api_key_and_ip() {
        let keys = HashMap::from([("k".to_string(), Principal::service("svc").with_tier("pro"))]);
        let extractor = KeyExtractor::new()
            .api_key_header("x-api-key", keys)
            .unwrap()
            .client_ip(TrustedProxies::none());
        let mut req = http::Request::builder()
            .header("x-api-key", "k")
            .body(())
            .unwrap();
        req.extensions_mut()
            .insert(PeerAddr("127.0.0.1:9".parse().unwrap()));
        let found = extractor.identify(req.headers(), req.extensions()).unwrap();
        assert_eq!(found.key(), "s:svc");
        req.extensions_mut().insert(Principal::user("u1"));
        let found = extractor.identify(req.headers(), req.extensions()).unwrap();
        assert_eq!(found.key(), "u:u1");
        // Same id, other kind: another caller.
        assert_ne!(
            Caller::Principal(Principal::service("u1")).key(),
            found.key()
        );
    }

    #[test]
    fn a_principals_key_is_made_once_and_lent() {
        use std::borrow::Cow;
        let principal = Principal::anonymous("a1")
            .with_tier("free")
            .with_roles(["r"]);
        let caller = Caller::Principal(principal.clone());
        assert!(matches!(caller.key_ref(), Cow::Borrowed("a:a1")));
        // A builder's copy keeps the key of its id and kind.
        let changed = Caller::Principal(principal.with_session("s1"));
        assert!(matches!(changed.key_ref(), Cow::Borrowed("a:a1")));
        let ip = Caller::Ip("2001:db8::1".parse().unwrap());
        assert!(matches!(ip.key_ref(), Cow::Owned(ref key) if key == "ip:2001:db8::1"));
        assert_eq!(ip.key(), "ip:2001:db8::1");
        assert_eq!(ip.to_string(), ip.key());
    }

    #[test]
    fn unknown_or_oversized_keys_fall_through_to_the_ip() {
        let keys = HashMap::from([("k".to_string(), Principal::service("svc"))]);
        let extractor = KeyExtractor::new()
            .api_key_header("x-api-key", keys)
            .unwrap()
            .client_ip(TrustedProxies::none());
        for key in ["nope".to_string(), "k".repeat(300)] {
            let mut req = http::Request::builder()
                .header("x-api-key", key)
                .body(())
                .unwrap();
            req.extensions_mut()
                .insert(PeerAddr("127.0.0.1:9".parse().unwrap()));
            let found = extractor.identify(req.headers(), req.extensions()).unwrap();
            assert_eq!(found, Caller::Ip("127.0.0.1".parse().unwrap()));
        }
    }

    #[cfg(feature = "axum")]
    #[tokio::test]
    async fn axum_handlers_extract_the_principal() {
        use axum::routing::get;
        use tower::ServiceExt;

        let app = axum::Router::new()
            .route("/me", get(|p: Principal| async move { p.id.to_string() }))
            .route(
                "/maybe",
                get(|p: Option<Principal>| async move { format!("{:?}", p.map(|p| p.id.clone())) }),
            );
        let request = |path: &str, principal: Option<Principal>| {
            let mut request = http::Request::get(path)
                .body(axum::body::Body::empty())
                .unwrap();
            if let Some(p) = principal {
                request.extensions_mut().insert(p);
            }
            request
        };
        let body = |response: http::Response<axum::body::Body>| async move {
            let bytes = http_body_util::BodyExt::collect(response.into_body())
                .await
                .unwrap()
                .to_bytes();
            String::from_utf8(bytes.to_vec()).unwrap()
        };
        let response = app
            .clone()
            .oneshot(request("/me", Some(Principal::user("u7"))))
            .await
            .unwrap();
        assert_eq!(body(response).await, "u7");
        let response = app.clone().oneshot(request("/me", None)).await.unwrap();
        assert_eq!(response.status(), 401);
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
        assert_eq!(
            response.headers()["www-authenticate"],
            "Bearer realm=\"api\""
        );
        assert!(
            body(response)
                .await
                .contains("\"error\":\"unauthenticated\"")
        );
        let response = app.clone().oneshot(request("/maybe", None)).await.unwrap();
        assert_eq!(body(response).await, "None");
    }

    #[test]
    fn ipv6_clients_are_keyed_by_prefix_and_mapped_ipv4_is_ipv4() {
        let extractor = KeyExtractor::new().client_ip(TrustedProxies::new(["10.0.0.0/8"]).unwrap());
        let identify = |peer: &str, xff: Option<&str>| {
            let mut req = http::Request::builder();
            if let Some(xff) = xff {
                req = req.header("x-forwarded-for", xff);
            }
            let mut req = req.body(()).unwrap();
            req.extensions_mut().insert(PeerAddr(peer.parse().unwrap()));
            extractor
                .identify(req.headers(), req.extensions())
                .unwrap()
                .key()
        };
        assert_eq!(
            identify("[2001:db8:1:2:aaaa::1]:9", None),
            "ip:2001:db8:1:2::"
        );
        assert_eq!(
            identify("[2001:db8:1:2:bbbb::7]:9", None),
            "ip:2001:db8:1:2::"
        );
        // An IPv4 proxy seen through a dual-stack socket is still trusted.
        assert_eq!(
            identify("[::ffff:10.0.0.2]:9", Some("198.51.100.4")),
            "ip:198.51.100.4"
        );
        assert_eq!(identify("[::ffff:203.0.113.9]:9", None), "ip:203.0.113.9");
        let full = KeyExtractor::new()
            .client_ip(TrustedProxies::none())
            .ipv6_prefix(128);
        let mut req = http::Request::builder().body(()).unwrap();
        req.extensions_mut()
            .insert(PeerAddr("[2001:db8::1]:9".parse().unwrap()));
        assert_eq!(
            full.identify(req.headers(), req.extensions())
                .unwrap()
                .key(),
            "ip:2001:db8::1"
        );
    }

    #[test]
    fn bad_api_key_header_names_are_config_errors() {
        let keys: HashMap<String, Principal> = HashMap::new();
        assert!(
            KeyExtractor::new()
                .api_key_header("bad header", keys)
                .is_err()
        );
    }

    #[test]
    fn nobody_is_found_without_an_ip_source() {
        let extractor = KeyExtractor::new();
        let mut req = http::Request::builder().body(()).unwrap();
        req.extensions_mut()
            .insert(PeerAddr("127.0.0.1:9".parse().unwrap()));
        assert_eq!(extractor.identify(req.headers(), req.extensions()), None);
    }
}
