//! A [`Caller`]: the principal or client address a policy counts by, and its storage key.

use std::fmt;
use std::net::IpAddr;

use super::identity::Principal;

/// A caller the [`KeyExtractor`](super::KeyExtractor) found.
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

/// Writes the caller as its storage [`key`](Caller::key).
impl fmt::Display for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.key_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
