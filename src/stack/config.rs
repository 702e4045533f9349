//! [`StackConfig`]: the whole stack as a configuration file states it.

use serde::{Deserialize, Serialize};

use super::backend::StackBackend;
use super::compose::{Maybe, PolicyStack};
use crate::audit::{AuditLayer, FileSink, config::AuditConfig};
use crate::conditional::{ConditionalLayer, config::ConditionalConfig};
use crate::error::ConfigError;
use crate::idempotency::{IdempotencyLayer, config::IdempotencyConfig};
use crate::principal::{KeyExtractor, Principal, TrustedProxies};
use crate::rate_limit::{RateLimitLayer, config::RateLimitConfig};
use crate::versioning::{VersioningLayer, config::VersioningConfig};

/// The configuration of a whole [`PolicyStack`], deserializable from any serde format (TOML,
/// YAML, JSON). A section left out leaves its slot empty; unknown keys are refused, so a typo
/// fails at start instead of silently changing nothing. Every error names the entry at fault,
/// e.g. `invalid configuration for `rate_limit.tiers.free`: ...`.
///
/// ```
/// use api_policy::backend::MemoryBackend;
/// use api_policy::stack::StackConfig;
///
/// let config: StackConfig = serde_json::from_value(serde_json::json!({
///     "callers": { "api_key_header": "x-api-key",
///                  "api_keys": [{ "key": "k_1", "id": "acme", "tier": "pro" }] },
///     "rate_limit": { "tiers": { "free": "60/min", "pro": "600/min" }, "default_tier": "free" },
/// }))?;
/// let stack = config.build(&MemoryBackend::new())?;
/// assert!(stack.rate_limit_layer().get().is_some());
/// assert!(stack.audit_layer().get().is_none());
///
/// let broken: StackConfig = serde_json::from_value(serde_json::json!({
///     "rate_limit": { "tiers": { "free": "60/fortnight" } },
/// }))?;
/// let error = broken.build(&MemoryBackend::new()).unwrap_err();
/// assert_eq!(error.field, "rate_limit.tiers.free");
/// # Ok::<_, Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct StackConfig {
    /// Where the layers keep their state.
    #[serde(default)]
    pub backend: BackendConfig,
    /// How callers are told apart (rate limit, idempotency scopes, version pins, audit IPs).
    #[serde(default)]
    pub callers: CallersConfig,
    /// JWT bearer authentication (feature `jwt`).
    #[cfg(feature = "jwt")]
    pub jwt: Option<crate::auth::config::JwtConfig>,
    /// The rate limit.
    pub rate_limit: Option<RateLimitConfig>,
    /// Versions and deprecations.
    pub versioning: Option<VersioningConfig>,
    /// Idempotency keys.
    pub idempotency: Option<IdempotencyConfig>,
    /// Conditional requests.
    pub conditional: Option<ConditionalConfig>,
    /// The PHI audit trail.
    pub audit: Option<AuditConfig>,
}

/// The `[backend]` section.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct BackendConfig {
    /// `memory` (the default: this process only) or `redis` (a fleet sharing one truth).
    #[serde(default)]
    pub kind: BackendKind,
    /// The Redis URL (`redis://host:6379/0`), with `kind = "redis"`.
    pub url: Option<String>,
    /// Instead of `url`, with `kind = "redis"`: the URLs of some nodes of a Redis Cluster
    /// (`["redis://10.0.0.1:7000", "redis://10.0.0.2:7000"]`). Needs the `cluster` feature.
    pub cluster: Option<Vec<String>>,
    /// The prefix of every Redis key (default `api-policy:`): one per application sharing a Redis.
    pub prefix: Option<String>,
    /// How long a Redis command may take before the layer's failure policy applies, in ms
    /// (default 500).
    pub timeout_ms: Option<u64>,
    /// The most keys each in-memory store holds (default 100,000).
    pub max_keys: Option<usize>,
    /// The most bytes each in-memory store holds, its keys and kept responses counted (default
    /// 64 MiB, at least 65,536).
    pub max_bytes: Option<usize>,
}

/// Which backend.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum BackendKind {
    /// [`MemoryBackend`](crate::backend::MemoryBackend).
    #[default]
    Memory,
    /// [`RedisBackend`](crate::backend::RedisBackend).
    Redis,
}

/// The `[callers]` section: the [`KeyExtractor`] every layer shares. A principal found by the
/// JWT layer always comes first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct CallersConfig {
    /// The header carrying API keys, e.g. `x-api-key`.
    pub api_key_header: Option<String>,
    /// The API keys and who they identify.
    #[serde(default)]
    pub api_keys: Vec<ApiKeyConfig>,
    /// Identify callers nobody else identifies by client IP.
    #[serde(default)]
    pub client_ip: bool,
    /// Proxies whose `X-Forwarded-For` is believed (addresses or networks); none by default.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
}

/// A `[[callers.api_keys]]` entry: a service client.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ApiKeyConfig {
    /// The key written inline (for local try-outs).
    pub key: Option<String>,
    /// The environment variable holding the key.
    pub key_env: Option<String>,
    /// The principal's id: what is counted and logged, never the key.
    pub id: String,
    /// The principal's rate-limit tier.
    pub tier: Option<String>,
}

/// The stack a [`StackConfig`] builds on backend `B`: every slot may be empty.
pub type ConfiguredStack<B> = PolicyStack<
    Maybe<AuditLayer<FileSink>>,
    AuthSlot,
    Maybe<RateLimitLayer<<B as StackBackend>::RateLimit>>,
    Maybe<VersioningLayer<<B as StackBackend>::VersionPins>>,
    Maybe<IdempotencyLayer<<B as StackBackend>::Idempotency>>,
    Maybe<ConditionalLayer<<B as StackBackend>::Validators>>,
>;

/// The authentication slot of a [`ConfiguredStack`].
#[cfg(feature = "jwt")]
pub type AuthSlot = Maybe<crate::auth::JwtAuthLayer>;
/// The authentication slot of a [`ConfiguredStack`] (always empty without the `jwt` feature).
#[cfg(not(feature = "jwt"))]
pub type AuthSlot = super::compose::Skip;

impl StackConfig {
    /// The stack on `backend`: opens the audit log, builds each configured layer. Build it
    /// inside a Tokio runtime when the audit trail is buffered.
    ///
    /// # Errors
    /// The first [`ConfigError`] found, naming its entry.
    pub fn build<B: StackBackend>(&self, backend: &B) -> Result<ConfiguredStack<B>, ConfigError> {
        let (callers, proxies) = self.callers.build()?;
        if let Some(limits) = &self.rate_limit {
            // A misspelt tier would quietly count its clients in the default tier.
            for (i, entry) in self.callers.api_keys.iter().enumerate() {
                if let Some(tier) = entry.tier.as_deref()
                    && !limits.tiers.contains_key(tier)
                {
                    return Err(ConfigError::new(
                        format!("callers.api_keys[{i}].tier"),
                        format!("`{tier}` is not one of rate_limit.tiers"),
                    ));
                }
            }
        }
        let rate_limit = self
            .rate_limit
            .as_ref()
            .map(|c| c.build(backend.rate_limit_store(), &callers))
            .transpose()?;
        let versioning = self
            .versioning
            .as_ref()
            .map(|c| c.build(backend.version_pin_store(), &callers))
            .transpose()?;
        let idempotency = self
            .idempotency
            .as_ref()
            .map(|c| c.build(backend.idempotency_store(), &callers))
            .transpose()?;
        let conditional = self
            .conditional
            .as_ref()
            .map(|c| c.build(backend.validator_store()))
            .transpose()?;
        #[cfg(feature = "jwt")]
        let auth = Maybe(self.jwt.as_ref().map(|c| c.build()).transpose()?);
        #[cfg(not(feature = "jwt"))]
        let auth = super::compose::Skip;
        // Last: the only step with a side effect (the log file), after everything else checked.
        let audit = self.audit.as_ref().map(|c| c.build(&proxies)).transpose()?;
        #[cfg(feature = "jwt")]
        let has_auth = auth.get().is_some();
        #[cfg(not(feature = "jwt"))]
        let has_auth = false;
        let held = [
            audit.is_some(),
            has_auth,
            rate_limit.is_some(),
            versioning.is_some(),
            idempotency.is_some(),
            conditional.is_some(),
        ];
        Ok(PolicyStack::new()
            .audit(Maybe(audit))
            .auth(auth)
            .rate_limit(Maybe(rate_limit))
            .versioning(Maybe(versioning))
            .idempotency(Maybe(idempotency))
            .conditional(Maybe(conditional))
            .room_only_for(held))
    }
}

impl BackendConfig {
    /// The in-memory backend this section describes.
    ///
    /// # Errors
    /// A [`ConfigError`] when the section names Redis or sets a Redis key, a zero `max_keys`, or
    /// a `max_bytes` under [`MIN_BYTES`](crate::backend::memory::MIN_BYTES).
    #[cfg(feature = "memory")]
    pub fn memory(&self) -> Result<crate::backend::MemoryBackend, ConfigError> {
        if self.kind != BackendKind::Memory {
            return Err(ConfigError::new(
                "backend.kind",
                "this section configures Redis",
            ));
        }
        for (set, field) in [
            (self.url.is_some(), "backend.url"),
            (self.cluster.is_some(), "backend.cluster"),
            (self.prefix.is_some(), "backend.prefix"),
            (self.timeout_ms.is_some(), "backend.timeout_ms"),
        ] {
            if set {
                return Err(ConfigError::new(field, "only for kind = \"redis\""));
            }
        }
        let mut builder = crate::backend::MemoryBackend::builder();
        if let Some(max) = self.max_keys {
            builder = builder.max_keys(max);
        }
        if let Some(max) = self.max_bytes {
            builder = builder.max_bytes(max);
        }
        builder.build().map_err(|e| {
            let field = format!("backend.{}", e.field.trim_start_matches("memory."));
            e.at(field)
        })
    }

    /// The Redis backend this section describes (it connects lazily).
    ///
    /// # Errors
    /// A [`ConfigError`] when the section names memory or sets `max_keys` or `max_bytes`, has no
    /// URL, or a URL, prefix or timeout that cannot work.
    #[cfg(feature = "redis")]
    pub fn redis(&self) -> Result<crate::backend::RedisBackend, ConfigError> {
        if self.kind != BackendKind::Redis {
            return Err(ConfigError::new(
                "backend.kind",
                "this section configures memory",
            ));
        }
        for (set, field) in [
            (self.max_keys.is_some(), "backend.max_keys"),
            (self.max_bytes.is_some(), "backend.max_bytes"),
        ] {
            if set {
                return Err(ConfigError::new(field, "only for kind = \"memory\""));
            }
        }
        let mut builder = match (&self.url, &self.cluster) {
            (Some(url), None) => crate::backend::RedisBackend::builder(url.as_str()),
            (Some(_), Some(_)) => {
                return Err(ConfigError::new(
                    "backend.cluster",
                    "give either `url` (one Redis) or `cluster` (its nodes), not both",
                ));
            }
            #[cfg(feature = "cluster")]
            (None, Some(nodes)) => crate::backend::RedisBackend::cluster(nodes.iter().cloned()),
            #[cfg(not(feature = "cluster"))]
            (None, Some(_)) => {
                return Err(ConfigError::new(
                    "backend.cluster",
                    "Redis Cluster needs the crate's `cluster` feature",
                ));
            }
            (None, None) => {
                return Err(ConfigError::new(
                    "backend.url",
                    "Redis needs a URL: redis://host:6379 (or `cluster`, its nodes' URLs)",
                ));
            }
        };
        if let Some(prefix) = &self.prefix {
            builder = builder.prefix(prefix.as_str());
        }
        if let Some(ms) = self.timeout_ms {
            builder = builder.timeout(std::time::Duration::from_millis(ms));
        }
        builder.build().map_err(|e| {
            let field = match &*e.field {
                "redis.prefix" => "backend.prefix",
                "redis.timeout" => "backend.timeout_ms",
                "redis.cluster" => "backend.cluster",
                _ => "backend.url",
            };
            e.at(field)
        })
    }
}

impl CallersConfig {
    /// The key extractor and the trusted proxies this section describes.
    ///
    /// # Errors
    /// A [`ConfigError`] for an invalid header name, proxy, or an API key neither given nor set.
    pub fn build(&self) -> Result<(KeyExtractor, TrustedProxies), ConfigError> {
        let proxies = TrustedProxies::new(&self.trusted_proxies)
            .map_err(|e| e.at("callers.trusted_proxies"))?;
        let mut extractor = KeyExtractor::new();
        match (&self.api_key_header, self.api_keys.is_empty()) {
            (None, true) => {}
            (None, false) => {
                return Err(ConfigError::new(
                    "callers.api_key_header",
                    "API keys need the header they arrive in, e.g. x-api-key",
                ));
            }
            (Some(header), _) => {
                let mut keys = crate::config_map::ConfigMap::default();
                for (i, entry) in self.api_keys.iter().enumerate() {
                    let field = format!("callers.api_keys[{i}]");
                    let (key, principal) = entry.resolve(&field)?;
                    if keys.insert(key, principal).is_some() {
                        return Err(ConfigError::new(field, "the same key as an earlier entry"));
                    }
                }
                extractor = extractor
                    .api_key_header(header, keys)
                    .map_err(|e| e.at("callers.api_key_header"))?;
            }
        }
        if self.client_ip {
            extractor = extractor.client_ip(proxies.clone());
        }
        Ok((extractor, proxies))
    }
}

impl ApiKeyConfig {
    fn resolve(&self, field: &str) -> Result<(String, Principal), ConfigError> {
        let key = match (&self.key, &self.key_env) {
            (Some(key), None) => key.clone(),
            (None, Some(var)) => std::env::var(var).map_err(|_| {
                ConfigError::new(
                    format!("{field}.key_env"),
                    format!("the environment variable `{var}` is not set (or not UTF-8)"),
                )
            })?,
            _ => {
                return Err(ConfigError::new(
                    field.to_string(),
                    "give exactly one of `key` or `key_env`",
                ));
            }
        };
        // A key no request can carry would identify nobody, silently.
        if key.is_empty()
            || key.len() > crate::principal::MAX_API_KEY_LEN
            || !key.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(ConfigError::new(
                field.to_string(),
                format!(
                    "a key is 1 to {} visible ASCII characters, without spaces",
                    crate::principal::MAX_API_KEY_LEN
                ),
            ));
        }
        let principal = Principal::service(self.id.as_str());
        Ok((
            key,
            match &self.tier {
                Some(tier) => principal.with_tier(tier.as_str()),
                None => principal,
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::MemoryBackend;

    /// A section left out leaves its slot empty, and an empty slot adds no field to an answer:
    /// it must not make the stack reserve room for one either.
    #[test]
    fn only_configured_slots_make_room_in_answers() {
        let build = |config: serde_json::Value| {
            serde_json::from_value::<StackConfig>(config)
                .unwrap()
                .build(&MemoryBackend::new())
                .unwrap()
        };
        assert_eq!(build(serde_json::json!({})).room_fields(), 0);
        let limited = build(serde_json::json!({
            "rate_limit": { "tiers": { "free": "60/min" }, "default_tier": "free" },
        }));
        assert_eq!(limited.room_fields(), super::super::room::SLOT_FIELDS[2]);
    }
}
