//! [`RateLimitLayer`] and its builder: tiers, route rules, and what to do when in doubt.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tower_layer::Layer;

use super::policy::{CompiledRule, Config, Limit, TierMap, Unidentified};
use super::quota::Quota;
use super::service::RateLimit;
use super::store::RateLimitStore;
use crate::error::{ConfigError, FailurePolicy};
use crate::principal::KeyExtractor;
use crate::rejection::{RenderRejection, SharedRenderer};
use crate::route::RouteMatcher;

/// A rule for requests matching one route pattern.
///
/// ```
/// use api_policy::rate_limit::{Quota, RouteRule};
/// // Booking has its own, tighter bucket; search costs 5 units of the tier quota; health is free.
/// let booking = RouteRule::limit(Quota::per_minute(5)).named("booking");
/// let search = RouteRule::cost(5);
/// let health = RouteRule::exempt();
/// # let _ = (booking, search, health);
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct RouteRule {
    own: Option<(Quota, HashMap<Box<str>, Quota>)>,
    cost: u32,
    exempt: bool,
    name: Option<Box<str>>,
}

impl RouteRule {
    /// The route has its own bucket with this quota, for every tier (Slack's per-method limits).
    pub fn limit(quota: Quota) -> Self {
        Self {
            own: Some((quota, HashMap::new())),
            cost: 1,
            exempt: false,
            name: None,
        }
    }

    /// The route spends `cost` units of the caller's tier quota per request.
    pub fn cost(cost: u32) -> Self {
        Self {
            own: None,
            cost,
            exempt: false,
            name: None,
        }
    }

    /// The route is not limited and gets no rate-limit headers.
    pub fn exempt() -> Self {
        Self {
            own: None,
            cost: 0,
            exempt: true,
            name: None,
        }
    }

    /// With its own bucket, a different quota for one tier.
    pub fn for_tier(mut self, tier: &str, quota: Quota) -> Self {
        if let Some((_, tiers)) = &mut self.own {
            tiers.insert(tier.into(), quota);
        }
        self
    }

    /// Sets the cost per request (default 1).
    pub fn with_cost(mut self, cost: u32) -> Self {
        self.cost = cost;
        self
    }

    /// Names the route's bucket, as it appears in `RateLimit-Policy` and in storage keys (default:
    /// the route pattern).
    pub fn named(mut self, name: &str) -> Self {
        self.name = Some(name.into());
        self
    }
}

/// Rate limits per caller, per tier and per route; see the [module docs](super).
#[derive(Debug, Clone)]
#[must_use]
pub struct RateLimitLayer<St> {
    store: St,
    config: Arc<Config>,
}

impl<St: RateLimitStore> RateLimitLayer<St> {
    /// Starts configuring a layer over `store`.
    pub fn builder(store: St) -> RateLimitBuilder<St> {
        RateLimitBuilder {
            store,
            tiers: Vec::new(),
            default_tier: None,
            anonymous_tier: None,
            routes: Vec::new(),
            extractor: KeyExtractor::new(),
            unidentified: Unidentified::default(),
            failure: FailurePolicy::default(),
            ietf_headers: false,
            renderer: SharedRenderer::default(),
        }
    }

    /// How many decisions the store failed to make since the layer was built (each one followed
    /// the failure policy).
    #[must_use]
    pub fn store_failures(&self) -> u64 {
        self.config.store_failures.load(Ordering::Relaxed)
    }

    /// The store, e.g. to set a caller's override.
    pub fn store(&self) -> &St {
        &self.store
    }
}

impl<St: RateLimitStore, S> Layer<S> for RateLimitLayer<St> {
    type Service = RateLimit<St, S>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit::new(inner, self.store.clone(), self.config.clone())
    }
}

/// Builds a [`RateLimitLayer`].
#[must_use]
pub struct RateLimitBuilder<St> {
    store: St,
    tiers: Vec<(String, Quota)>,
    default_tier: Option<String>,
    anonymous_tier: Option<String>,
    routes: Vec<(String, RouteRule)>,
    extractor: KeyExtractor,
    unidentified: Unidentified,
    failure: FailurePolicy,
    ietf_headers: bool,
    renderer: SharedRenderer,
}

impl<St: RateLimitStore> RateLimitBuilder<St> {
    /// Adds a tier; the first one added is the default tier unless [`default_tier`](Self::default_tier)
    /// names another.
    pub fn tier(mut self, name: &str, quota: Quota) -> Self {
        self.tiers.push((name.to_string(), quota));
        self
    }

    /// The tier for principals without a tier, or with one that is not configured.
    pub fn default_tier(mut self, name: &str) -> Self {
        self.default_tier = Some(name.to_string());
        self
    }

    /// The tier for anonymous callers (default: a tier named `anonymous` if there is one, else the
    /// default tier).
    pub fn anonymous_tier(mut self, name: &str) -> Self {
        self.anonymous_tier = Some(name.to_string());
        self
    }

    /// Adds a rule for a route pattern (see [`RoutePattern`](crate::route::RoutePattern)); the first
    /// matching rule wins. Routes without a rule spend one unit of the tier quota.
    pub fn route(mut self, pattern: &str, rule: RouteRule) -> Self {
        self.routes.push((pattern.to_string(), rule));
        self
    }

    /// How callers are found (default: principals in the request extensions only).
    pub fn key_extractor(mut self, extractor: KeyExtractor) -> Self {
        self.extractor = extractor;
        self
    }

    /// What to do with requests whose caller is not found (default: [`Unidentified::reject`]).
    pub fn on_unidentified(mut self, rule: Unidentified) -> Self {
        self.unidentified = rule;
        self
    }

    /// What to do when the store fails (default: fail open).
    pub fn on_store_error(mut self, policy: FailurePolicy) -> Self {
        self.failure = policy;
        self
    }

    /// Also sends the IETF draft's `RateLimit-Policy` and `RateLimit` fields (default: off).
    pub fn ietf_headers(mut self, on: bool) -> Self {
        self.ietf_headers = on;
        self
    }

    /// Replaces the renderer of rejections.
    pub fn renderer(mut self, renderer: impl RenderRejection) -> Self {
        self.renderer = SharedRenderer::new(renderer);
        self
    }

    /// The layer.
    ///
    /// # Errors
    /// A [`ConfigError`] for no tiers, an unknown default or anonymous tier, an invalid quota or
    /// route pattern.
    pub fn build(self) -> Result<RateLimitLayer<St>, ConfigError> {
        let first = self
            .tiers
            .first()
            .ok_or_else(|| ConfigError::new("rate_limit.tiers", "add at least one tier"))?;
        let default_tier = self.default_tier.clone().unwrap_or_else(|| first.0.clone());
        let mut tiers = TierMap::default();
        for (name, quota) in &self.tiers {
            let limit = Limit::tier(name, *quota, &format!("rate_limit.tiers.{name}"))?;
            tiers.insert(Box::<str>::from(name.as_str()), Arc::new(limit));
        }
        let Some(default_limit) = tiers.get(default_tier.as_str()).cloned() else {
            return Err(ConfigError::new(
                "rate_limit.default_tier",
                format!("`{default_tier}` is not a configured tier"),
            ));
        };
        let anonymous_tier = match self.anonymous_tier {
            Some(name) if !tiers.contains_key(name.as_str()) => {
                return Err(ConfigError::new(
                    "rate_limit.anonymous_tier",
                    format!("`{name}` is not a configured tier"),
                ));
            }
            Some(name) => name,
            None if tiers.contains_key("anonymous") => "anonymous".to_string(),
            None => default_tier.clone(),
        };
        let mut routes = RouteMatcher::new();
        for (pattern, rule) in self.routes {
            let field = format!("rate_limit.routes.{pattern}");
            let compiled = match rule.own {
                _ if rule.exempt => CompiledRule::Exempt,
                None => CompiledRule::Tier { cost: rule.cost },
                Some((quota, by_tier)) => {
                    let bucket: Box<str> =
                        rule.name.clone().unwrap_or_else(|| pattern.as_str().into());
                    let by_tier = by_tier
                        .into_iter()
                        .map(|(tier, q)| {
                            Limit::route(&bucket, q, &field).map(|l| (tier, Arc::new(l)))
                        })
                        .collect::<Result<_, _>>()?;
                    CompiledRule::Own {
                        default: Arc::new(Limit::route(&bucket, quota, &field)?),
                        by_tier,
                        cost: rule.cost,
                    }
                }
            };
            routes = routes.add(&pattern, compiled)?;
        }
        let config = Config {
            tiers,
            default_tier: default_limit,
            anonymous_tier: anonymous_tier.into(),
            routes,
            extractor: self.extractor,
            unidentified: self.unidentified,
            failure: self.failure,
            ietf_headers: self.ietf_headers,
            renderer: self.renderer,
            store_failures: AtomicU64::new(0),
            backend: self.store.backend_name(),
        };
        Ok(RateLimitLayer {
            store: self.store,
            config: Arc::new(config),
        })
    }
}
