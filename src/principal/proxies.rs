//! Where a request comes from: the connection's peer, and the proxies trusted to name the
//! client behind them.

use std::net::{IpAddr, SocketAddr};

use http::{Extensions, HeaderMap};
use ipnet::IpNet;

use crate::error::ConfigError;

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

impl TrustedProxies {
    /// The client address of a request: its peer ([`PeerAddr`], or axum's `ConnectInfo`), or the
    /// address a trusted proxy in front of it names. `None` when the peer is unknown.
    #[must_use]
    pub fn client_of(&self, headers: &HeaderMap, extensions: &Extensions) -> Option<IpAddr> {
        peer_ip(extensions).map(|peer| self.client_ip(peer, headers))
    }
}

pub(super) fn peer_ip(extensions: &Extensions) -> Option<IpAddr> {
    if let Some(PeerAddr(addr)) = extensions.get::<PeerAddr>() {
        return Some(addr.ip());
    }
    #[cfg(feature = "axum")]
    if let Some(info) = extensions.get::<axum::extract::ConnectInfo<SocketAddr>>() {
        return Some(info.0.ip());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
