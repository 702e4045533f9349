//! The compiled rate-limit policy: what the builder makes and the service reads (tiers, route
//! rules, the quota a request is checked against, what to do when in doubt).

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use http::HeaderValue;

use super::headers::LimitFields;
use super::quota::Quota;
use crate::error::{ConfigError, FailurePolicy};
use crate::principal::{Caller, KeyExtractor, PrincipalKind};
use crate::rejection::SharedRenderer;
use crate::route::RouteMatcher;

/// What happens to a request whose caller the [`KeyExtractor`] cannot find.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Unidentified {
    /// Answer 401 `unidentified_caller` with this `WWW-Authenticate` challenge.
    Reject {
        /// The challenge, e.g. `Bearer realm="api"`.
        challenge: HeaderValue,
    },
    /// Count every unidentified request in one shared bucket of the anonymous tier. Simple, but one
    /// noisy client exhausts it for all; prefer identifying anonymous callers by trusted IP
    /// ([`KeyExtractor::client_ip`]).
    SharedAnonymous,
}

impl Default for Unidentified {
    /// [`Unidentified::reject`]: nobody is limited by accident in a bucket shared with strangers.
    fn default() -> Self {
        Self::reject()
    }
}

impl Unidentified {
    /// 401 with `WWW-Authenticate: Bearer realm="api"`.
    #[must_use]
    pub fn reject() -> Self {
        Self::Reject {
            challenge: HeaderValue::from_static("Bearer realm=\"api\""),
        }
    }
}

/// A quota ready to use: its name, its header values built once, its bucket in storage.
#[derive(Debug, Clone)]
pub(crate) struct Limit {
    pub quota: Quota,
    pub name: Box<str>,
    /// The header values of this quota, built once.
    pub fields: LimitFields,
    /// The bucket's name in storage: `default` for tiers, `r:<name>` for routes, so no route
    /// can name its way into a tier bucket or a caller's override.
    pub bucket: Box<str>,
    /// Whether a caller's override replaces the quota (tier buckets only).
    pub overridable: bool,
}

impl Limit {
    pub(crate) fn tier(name: &str, quota: Quota, field: &str) -> Result<Self, ConfigError> {
        Self::new(name, quota, field, "default".into(), true)
    }

    pub(crate) fn route(name: &str, quota: Quota, field: &str) -> Result<Self, ConfigError> {
        if name.is_empty() {
            return Err(ConfigError::new(
                field.to_string(),
                "a route bucket needs a name",
            ));
        }
        Self::new(name, quota, field, format!("r:{name}").into(), false)
    }

    fn new(
        name: &str,
        quota: Quota,
        field: &str,
        bucket: Box<str>,
        overridable: bool,
    ) -> Result<Self, ConfigError> {
        quota.validate(field)?;
        Ok(Self {
            bucket,
            overridable,
            quota,
            name: name.into(),
            fields: LimitFields::new(name, &quota),
        })
    }
}

/// Quotas by tier name.
pub(crate) type TierMap = crate::config_map::ConfigMap<Box<str>, Arc<Limit>>;

#[derive(Debug)]
pub(crate) enum CompiledRule {
    Exempt,
    Tier {
        cost: u32,
    },
    Own {
        default: Arc<Limit>,
        by_tier: TierMap,
        cost: u32,
    },
}

#[derive(Debug)]
pub(crate) struct Config {
    pub tiers: TierMap,
    pub default_tier: Arc<Limit>,
    pub anonymous_tier: Box<str>,
    pub routes: RouteMatcher<CompiledRule>,
    pub extractor: KeyExtractor,
    pub unidentified: Unidentified,
    pub failure: FailurePolicy,
    pub ietf_headers: bool,
    pub renderer: SharedRenderer,
    pub store_failures: AtomicU64,
    /// The store's backend name, for failure events.
    pub backend: &'static str,
}

impl Config {
    /// The tier quota for a caller: its own tier, the anonymous tier for anonymous callers, the
    /// default tier otherwise (including an unknown tier name).
    pub(crate) fn tier_for(&self, caller: Option<&Caller>) -> &Arc<Limit> {
        let name = match caller {
            None | Some(Caller::Ip(_)) => &*self.anonymous_tier,
            Some(Caller::Principal(p))
                if p.kind == PrincipalKind::Anonymous && p.tier.is_none() =>
            {
                &*self.anonymous_tier
            }
            Some(Caller::Principal(p)) => match p.tier.as_deref() {
                Some(tier) => tier,
                None => return &self.default_tier,
            },
        };
        self.tiers.get(name).unwrap_or(&self.default_tier)
    }
}
