//! [`RateLimitConfig`]: the rate limit as a configuration file states it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::policy::Unidentified;
use super::{Algorithm, Quota, RateLimitBuilder, RateLimitLayer, RateLimitStore, RouteRule};
use crate::error::{ConfigError, FailurePolicy};
use crate::principal::KeyExtractor;
use crate::route::checked;

/// The `[rate_limit]` section of a [`StackConfig`](crate::stack::StackConfig).
///
/// ```toml
/// [rate_limit]
/// default_tier = "free"
/// ietf_headers = true
/// [rate_limit.tiers]
/// free = "60/min"
/// pro = "600/min"
/// anonymous = "20/min"
/// [[rate_limit.routes]]
/// route = "POST /api/v2/appointments"
/// limit = "5/min"
/// name = "booking"
/// [[rate_limit.routes]]
/// route = "/health"
/// exempt = true
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RateLimitConfig {
    /// Quotas by tier name, each `N/UNIT` (UNIT one of `ms`, `s`, `min`, `h`, `d`).
    pub tiers: BTreeMap<String, String>,
    /// The tier of principals without a (configured) tier; needed when there are several tiers.
    pub default_tier: Option<String>,
    /// The tier of anonymous callers (default: `anonymous` if configured, else the default tier).
    pub anonymous_tier: Option<String>,
    /// Per-route rules, first match wins.
    #[serde(default)]
    pub routes: Vec<RouteLimitConfig>,
    /// `gcra` (the default) or `sliding_window`, for every quota.
    #[serde(default)]
    pub algorithm: AlgorithmName,
    /// Also send the IETF `RateLimit` and `RateLimit-Policy` fields.
    #[serde(default)]
    pub ietf_headers: bool,
    /// `open` (the default: let requests through) or `closed` (503) when the store is down.
    #[serde(default)]
    pub on_store_error: FailurePolicy,
    /// `reject` (the default: 401) or `shared_anonymous` for callers nobody can identify.
    #[serde(default)]
    pub unidentified: UnidentifiedRule,
}

/// A `[[rate_limit.routes]]` entry: exactly one of `limit`, `cost` or `exempt`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RouteLimitConfig {
    /// The route pattern, e.g. `POST /api/v2/appointments` or `/search/*`.
    pub route: String,
    /// The route's own bucket, `N/UNIT`, for every tier.
    pub limit: Option<String>,
    /// The own bucket's quota for some tiers, by tier name (with `limit`).
    #[serde(default)]
    pub tiers: BTreeMap<String, String>,
    /// The bucket's name in headers and storage (with `limit`; default: the pattern).
    pub name: Option<String>,
    /// Units spent per request (of the route's bucket, or of the tier's without `limit`).
    pub cost: Option<u32>,
    /// Not limited at all.
    #[serde(default)]
    pub exempt: bool,
}

/// The rate-limit algorithm by name.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AlgorithmName {
    /// [`Algorithm::Gcra`].
    #[default]
    Gcra,
    /// [`Algorithm::SlidingWindow`].
    SlidingWindow,
}

/// What an unidentified caller gets, by name.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum UnidentifiedRule {
    /// [`Unidentified::reject`].
    #[default]
    Reject,
    /// [`Unidentified::SharedAnonymous`].
    SharedAnonymous,
}

impl RateLimitConfig {
    /// A builder over `store` with this configuration and `callers`, for further settings
    /// (a renderer) before [`RateLimitBuilder::build`].
    ///
    /// # Errors
    /// A [`ConfigError`] naming the entry, e.g. `rate_limit.tiers.free`, and why.
    pub fn builder<St: RateLimitStore>(
        &self,
        store: St,
        callers: &KeyExtractor,
    ) -> Result<RateLimitBuilder<St>, ConfigError> {
        let algorithm = match self.algorithm {
            AlgorithmName::Gcra => Algorithm::Gcra,
            AlgorithmName::SlidingWindow => Algorithm::SlidingWindow,
        };
        let quota = |text: &str, field: String| {
            text.parse::<Quota>()
                .map(|q| q.with_algorithm(algorithm))
                .map_err(|e| e.at(field))
        };
        if self.tiers.is_empty() {
            return Err(ConfigError::new(
                "rate_limit.tiers",
                "name at least one tier, e.g. free = \"60/min\"",
            ));
        }
        let mut builder = RateLimitLayer::builder(store);
        for (name, limit) in &self.tiers {
            builder = builder.tier(name, quota(limit, format!("rate_limit.tiers.{name}"))?);
        }
        match &self.default_tier {
            Some(name) => builder = builder.default_tier(name),
            None if self.tiers.len() > 1 => {
                return Err(ConfigError::new(
                    "rate_limit.default_tier",
                    "with several tiers, name the one for principals without a tier",
                ));
            }
            None => {}
        }
        if let Some(name) = &self.anonymous_tier {
            builder = builder.anonymous_tier(name);
        }
        for (i, route) in self.routes.iter().enumerate() {
            let field = format!("rate_limit.routes[{i}]");
            checked(&route.route, format!("{field}.route"))?;
            if route.name.as_deref() == Some("") {
                return Err(ConfigError::new(
                    format!("{field}.name"),
                    "the bucket's name is empty",
                ));
            }
            if let Some(tier) = route.tiers.keys().find(|t| !self.tiers.contains_key(*t)) {
                return Err(ConfigError::new(
                    format!("{field}.tiers.{tier}"),
                    format!("`{tier}` is not one of rate_limit.tiers"),
                ));
            }
            builder = builder.route(&route.route, route.rule(&field, &quota)?);
        }
        Ok(builder
            .key_extractor(callers.clone())
            .ietf_headers(self.ietf_headers)
            .on_store_error(self.on_store_error)
            .on_unidentified(match self.unidentified {
                UnidentifiedRule::Reject => Unidentified::reject(),
                UnidentifiedRule::SharedAnonymous => Unidentified::SharedAnonymous,
            }))
    }

    /// The layer over `store` with this configuration and `callers`.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the entry at fault under `rate_limit`.
    pub fn build<St: RateLimitStore>(
        &self,
        store: St,
        callers: &KeyExtractor,
    ) -> Result<RateLimitLayer<St>, ConfigError> {
        self.builder(store, callers)?
            .build()
            .map_err(|e| e.under("rate_limit"))
    }
}

impl RouteLimitConfig {
    fn rule(
        &self,
        field: &str,
        quota: &impl Fn(&str, String) -> Result<Quota, ConfigError>,
    ) -> Result<RouteRule, ConfigError> {
        let kinds = usize::from(self.limit.is_some())
            + usize::from(self.exempt)
            + usize::from(self.cost.is_some() && self.limit.is_none());
        if kinds != 1 {
            return Err(ConfigError::new(
                field.to_string(),
                format!(
                    "route `{}`: give exactly one of `limit`, `cost` or `exempt = true`",
                    self.route
                ),
            ));
        }
        if self.limit.is_none() && (self.name.is_some() || !self.tiers.is_empty()) {
            return Err(ConfigError::new(
                field.to_string(),
                "`name` and `tiers` belong to a route with its own `limit`",
            ));
        }
        if self.exempt {
            return Ok(RouteRule::exempt());
        }
        let Some(limit) = &self.limit else {
            return Ok(RouteRule::cost(self.cost.unwrap_or(1)));
        };
        let mut rule = RouteRule::limit(quota(limit, format!("{field}.limit"))?);
        for (tier, limit) in &self.tiers {
            rule = rule.for_tier(tier, quota(limit, format!("{field}.tiers.{tier}"))?);
        }
        if let Some(cost) = self.cost {
            rule = rule.with_cost(cost);
        }
        if let Some(name) = &self.name {
            rule = rule.named(name);
        }
        Ok(rule)
    }
}
