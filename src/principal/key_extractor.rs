//! The [`KeyExtractor`]: finds the caller of a request, from the principal an earlier layer
//! found, an API key, or the client address.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use http::{Extensions, HeaderMap, HeaderName};

use super::caller::Caller;
use super::identity::Principal;
use super::proxies::{TrustedProxies, peer_ip};
use crate::error::ConfigError;

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

/// Finds the caller of a request; see the [module docs](super) for the order.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::principal::PeerAddr;

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
