//! [`ConditionalConfig`]: conditional requests as a configuration file states them.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ConditionalBuilder, ConditionalLayer, ResourceRule, ValidatorStore};
use crate::error::ConfigError;
use crate::route::checked;

/// The `[conditional]` section of a [`StackConfig`](crate::stack::StackConfig). Every `GET` 200
/// gets an ETag; the resources listed also learn validators and guard updates. A lookup of the
/// application's own validators (a version column) is code, not configuration: add it with
/// [`ConditionalConfig::builder`] and [`ConditionalBuilder::lookup`].
///
/// ```toml
/// [[conditional.resources]]
/// route = "/api/v2/appointments/{id}"
/// cache_control = "private, max-age=300"
/// require_preconditions = true
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ConditionalConfig {
    /// Resource routes.
    #[serde(default)]
    pub resources: Vec<ResourceConfig>,
    /// The largest body digested into an ETag.
    pub max_body_bytes: Option<usize>,
    /// How long learned validators are trusted, in seconds.
    pub validator_ttl_secs: Option<u64>,
}

/// A `[[conditional.resources]]` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ResourceConfig {
    /// The route pattern, without a method.
    pub route: String,
    /// `Cache-Control` for answers that set none.
    pub cache_control: Option<String>,
    /// `PUT`, `PATCH` and `DELETE` need `If-Match` or `If-Unmodified-Since` (428 without).
    #[serde(default)]
    pub require_preconditions: bool,
    /// Answer a matching `If-None-Match` from the known validators, without the handler.
    #[serde(default)]
    pub fast_not_modified: bool,
}

impl ConditionalConfig {
    /// A builder over `store` with this configuration, for a lookup or other settings before
    /// [`ConditionalBuilder::build`].
    ///
    /// # Errors
    /// A [`ConfigError`] naming the entry: a route that does not parse or names a method, a zero
    /// TTL.
    pub fn builder<St: ValidatorStore>(
        &self,
        store: St,
    ) -> Result<ConditionalBuilder<St>, ConfigError> {
        let mut builder = ConditionalLayer::builder(store);
        for (i, resource) in self.resources.iter().enumerate() {
            let field = format!("conditional.resources[{i}].route");
            if checked(&resource.route, field.clone())?.method().is_some() {
                return Err(ConfigError::new(
                    field,
                    format!(
                        "`{}`: a resource is a path; the layer knows which methods read and write it",
                        resource.route
                    ),
                ));
            }
            let mut rule = ResourceRule::resource();
            if let Some(value) = &resource.cache_control {
                rule = rule.cache_control(value);
            }
            if resource.require_preconditions {
                rule = rule.require_preconditions();
            }
            if resource.fast_not_modified {
                rule = rule.fast_not_modified();
            }
            builder = builder.resource(&resource.route, rule);
        }
        if let Some(bytes) = self.max_body_bytes {
            builder = builder.max_body_bytes(bytes);
        }
        if let Some(secs) = self.validator_ttl_secs {
            if secs == 0 {
                return Err(ConfigError::new(
                    "conditional.validator_ttl_secs",
                    "must be more than zero",
                ));
            }
            builder = builder.validator_ttl(Duration::from_secs(secs));
        }
        Ok(builder)
    }

    /// The layer over `store` with this configuration.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the entry under `conditional`.
    pub fn build<St: ValidatorStore>(
        &self,
        store: St,
    ) -> Result<ConditionalLayer<St>, ConfigError> {
        self.builder(store)?
            .build()
            .map_err(|e| e.under("conditional"))
    }
}
