//! [`IdempotencyConfig`]: idempotency keys as a configuration file states them.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{IdempotencyBuilder, IdempotencyLayer, IdempotencyStore, KeyRule};
use crate::error::ConfigError;
use crate::principal::KeyExtractor;
use crate::route::{checked, parse_method};

/// The `[idempotency]` section of a [`StackConfig`](crate::stack::StackConfig). Unset values keep
/// the layer's defaults (POST and PATCH, keys optional, 60 s lease, 24 h retention, 1 MiB bodies).
///
/// ```toml
/// [idempotency]
/// require = ["POST /api/v2/appointments"]
/// ignore = ["/webhooks/*"]
/// retention_secs = 86400
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct IdempotencyConfig {
    /// Route patterns whose requests must carry a key (400 without). A pattern naming a method
    /// names one of `methods`.
    #[serde(default)]
    pub require: Vec<String>,
    /// Route patterns where the header is not looked at; tried before `require`, so an exception
    /// carved out of a required prefix holds.
    #[serde(default)]
    pub ignore: Vec<String>,
    /// Whether other routes are `optional` (the default) or `required` or `ignored`.
    pub default: Option<KeyRuleName>,
    /// The methods covered, e.g. `["POST", "PATCH"]` (the default).
    pub methods: Option<Vec<String>>,
    /// How long an attempt holds its key before a retry may take it over, in seconds.
    pub lease_secs: Option<u64>,
    /// How long an outcome is replayed, in seconds.
    pub retention_secs: Option<u64>,
    /// The largest request body fingerprinted; larger ones get 413.
    pub max_request_bytes: Option<usize>,
    /// The largest response body kept for replay.
    pub max_response_bytes: Option<usize>,
    /// Do not keep 5xx answers: a retry runs the handler again.
    #[serde(default)]
    pub release_on_5xx: bool,
    /// Let a duplicate wait this long for the first attempt's outcome instead of 409, in
    /// milliseconds.
    pub wait_for_in_flight_ms: Option<u64>,
}

/// A [`KeyRule`] by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum KeyRuleName {
    /// [`KeyRule::Required`].
    Required,
    /// [`KeyRule::Optional`].
    Optional,
    /// [`KeyRule::Ignored`].
    Ignored,
}

impl IdempotencyConfig {
    /// A builder over `store` with this configuration and `callers`, for further settings
    /// before [`IdempotencyBuilder::build`].
    ///
    /// # Errors
    /// A [`ConfigError`] naming the entry under `idempotency`.
    pub fn builder<St: IdempotencyStore>(
        &self,
        store: St,
        callers: &KeyExtractor,
    ) -> Result<IdempotencyBuilder<St>, ConfigError> {
        let mut builder = IdempotencyLayer::builder(store).key_extractor(callers.clone());
        let methods = match &self.methods {
            None => vec![http::Method::POST, http::Method::PATCH],
            Some(methods) => methods
                .iter()
                .enumerate()
                .map(|(i, m)| method(m, format!("idempotency.methods[{i}]")))
                .collect::<Result<Vec<_>, _>>()?,
        };
        for (i, pattern) in self.ignore.iter().enumerate() {
            checked(pattern, format!("idempotency.ignore[{i}]"))?;
            builder = builder.route(pattern, KeyRule::Ignored);
        }
        for (i, pattern) in self.require.iter().enumerate() {
            let field = format!("idempotency.require[{i}]");
            if let Some(m) = checked(pattern, field.clone())?.method()
                && !methods.contains(m)
            {
                return Err(ConfigError::new(
                    field,
                    format!(
                        "`{pattern}`: {m} is not one of the methods covered (idempotency.methods)"
                    ),
                ));
            }
            builder = builder.route(pattern, KeyRule::Required);
        }
        if let Some(rule) = self.default {
            builder = builder.default_rule(match rule {
                KeyRuleName::Required => KeyRule::Required,
                KeyRuleName::Optional => KeyRule::Optional,
                KeyRuleName::Ignored => KeyRule::Ignored,
            });
        }
        builder = builder.methods(methods);
        if let Some(secs) = self.lease_secs {
            builder = builder.lease(Duration::from_secs(positive(
                secs,
                "idempotency.lease_secs",
            )?));
        }
        if let Some(secs) = self.retention_secs {
            builder = builder.retention(Duration::from_secs(positive(
                secs,
                "idempotency.retention_secs",
            )?));
        }
        if let Some(bytes) = self.max_request_bytes {
            builder = builder.max_request_bytes(bytes);
        }
        if let Some(bytes) = self.max_response_bytes {
            builder = builder.max_response_bytes(bytes);
        }
        if let Some(ms) = self.wait_for_in_flight_ms {
            builder = builder.wait_for_in_flight(Duration::from_millis(ms));
        }
        Ok(builder.release_on_5xx(self.release_on_5xx))
    }

    /// The layer over `store` with this configuration and `callers`.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the entry under `idempotency`.
    pub fn build<St: IdempotencyStore>(
        &self,
        store: St,
        callers: &KeyExtractor,
    ) -> Result<IdempotencyLayer<St>, ConfigError> {
        self.builder(store, callers)?
            .build()
            .map_err(|e| e.under("idempotency"))
    }
}

/// An HTTP method as a configuration names it.
fn method(text: &str, field: String) -> Result<http::Method, ConfigError> {
    parse_method(text).map_err(|reason| ConfigError::new(field, format!("`{text}`: {reason}")))
}

fn positive(value: u64, field: &'static str) -> Result<u64, ConfigError> {
    if value == 0 {
        return Err(ConfigError::new(field, "must be more than zero"));
    }
    Ok(value)
}
