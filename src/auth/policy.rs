//! The compiled JWT policy: what the builder makes and the service and the verifier read (keys,
//! accepted issuers and audiences, claims, route rules, revocation, the verified-token cache).

use std::sync::Arc;

use jsonwebtoken::Algorithm;

use super::cache::VerifiedCache;
use super::claims::{ClaimNames, ClaimsType};
#[cfg(feature = "jwks")]
use super::jwks::{Jwks, Snapshot};
use super::keys::VerifyKey;
use super::require::{Denials, Require};
use super::revocation::DynRevocation;
use super::token::TokenSource;
use crate::clock::SharedClock;
use crate::error::FailurePolicy;
use crate::route::RouteMatcher;

/// Settings shared by every clone of the layer and its services.
pub(crate) struct Config {
    pub(crate) keys: Vec<VerifyKey>,
    #[cfg(feature = "jwks")]
    pub(crate) jwks: Option<Jwks>,
    pub(crate) algorithms: Vec<Algorithm>,
    /// Trusted issuers; empty: any.
    pub(crate) issuers: Vec<String>,
    /// Accepted audiences; empty: any.
    pub(crate) audiences: Vec<String>,
    pub(crate) leeway: u64,
    pub(crate) require_exp: bool,
    pub(crate) max_lifetime: Option<u64>,
    pub(crate) typ: Option<String>,
    pub(crate) required_claims: Vec<String>,
    pub(crate) names: ClaimNames,
    pub(crate) claims_type: ClaimsType,
    pub(crate) source: TokenSource,
    pub(crate) default_rule: Require,
    pub(crate) routes: RouteMatcher<Require>,
    pub(crate) revocation: Option<Arc<dyn DynRevocation>>,
    pub(crate) revocation_failure: FailurePolicy,
    pub(crate) cache: Option<VerifiedCache>,
    pub(crate) clock: SharedClock,
    /// The realm and renderer of every refusal, the layer's own and `Access`'s alike.
    pub(crate) denials: Arc<Denials>,
}

/// The published keys held now: nothing without the `jwks` feature or a JWKS source.
pub(crate) struct Published {
    #[cfg(feature = "jwks")]
    snapshot: Option<Arc<Snapshot>>,
}

impl Published {
    pub(crate) fn keys(&self) -> &[VerifyKey] {
        #[cfg(feature = "jwks")]
        if let Some(snapshot) = &self.snapshot {
            return &snapshot.keys;
        }
        &[]
    }

    /// Which fetch the keys came from (0: none yet); a refetch asked for with an older one is
    /// already done.
    #[cfg_attr(not(feature = "jwks"), allow(dead_code))]
    pub(crate) fn generation(&self) -> u64 {
        #[cfg(feature = "jwks")]
        if let Some(snapshot) = &self.snapshot {
            return snapshot.generation;
        }
        0
    }

    /// Changes whenever the published keys change: verified tokens are cached per epoch.
    pub(crate) fn epoch(&self) -> u64 {
        #[cfg(feature = "jwks")]
        if let Some(snapshot) = &self.snapshot {
            return snapshot.epoch;
        }
        0
    }
}

impl Config {
    pub(crate) fn published(&self) -> Published {
        #[cfg(feature = "jwks")]
        let snapshot = self.jwks.as_ref().and_then(|jwks| {
            let snapshot = jwks.snapshot()?;
            jwks.refresh_if_stale(&snapshot);
            Some(snapshot)
        });
        Published {
            #[cfg(feature = "jwks")]
            snapshot,
        }
    }

    /// Whether unknown keys can be looked for by fetching.
    pub(crate) fn fetches_keys(&self) -> bool {
        #[cfg(feature = "jwks")]
        if self.jwks.is_some() {
            return true;
        }
        false
    }

    /// How long a request refused for want of keys should wait.
    pub(crate) fn retry_after_secs(&self) -> u64 {
        #[cfg(feature = "jwks")]
        if let Some(jwks) = &self.jwks {
            return jwks.cooldown().as_secs().max(1);
        }
        1
    }

    pub(crate) fn rule_for(&self, method: &http::Method, path: &str) -> &Require {
        self.routes
            .find(method, path)
            .map_or(&self.default_rule, |m| m.value)
    }
}
