//! Errors: configuration mistakes found at build time, and store failures found at request time.

use std::borrow::Cow;

/// A configuration that cannot work, found when a layer or backend is built (never at request time).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration for `{field}`: {reason}")]
pub struct ConfigError {
    /// The setting at fault, e.g. `rate_limit.tiers.free`.
    pub field: Cow<'static, str>,
    /// Why it was refused.
    pub reason: String,
}

impl ConfigError {
    /// A new error naming the `field` and the `reason`.
    pub fn new(field: impl Into<Cow<'static, str>>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }
    /// The same reason, charged to `field` (a builder's generic name replaced by the path of the
    /// configuration entry that supplied the value).
    #[must_use]
    pub fn at(mut self, field: impl Into<Cow<'static, str>>) -> Self {
        self.field = field.into();
        self
    }

    /// The same error with its field placed under `section`: `tiers` becomes `rate_limit.tiers`;
    /// a field already under it is left alone.
    #[must_use]
    pub fn under(mut self, section: &str) -> Self {
        let already = self
            .field
            .strip_prefix(section)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']));
        if !already {
            self.field = format!("{section}.{}", self.field).into();
        }
        self
    }
}

/// A state store could not answer. Each layer's failure policy decides what the request gets.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The backend is unreachable or refused the command.
    #[cfg(feature = "redis")]
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// The backend did not answer in time.
    #[error("store did not answer within {0:?}")]
    Timeout(std::time::Duration),
    /// The backend is not connected and a reconnection attempt is already under way or cooling down.
    #[error("store unavailable: {0}")]
    Unavailable(&'static str),
    /// The value to store was refused before reaching the backend.
    #[error(transparent)]
    Invalid(#[from] ConfigError),
    /// The backend answered something this crate did not write.
    #[error("unexpected answer from store: {0}")]
    Protocol(String),
}

/// What a layer does when its store cannot answer. Each layer documents its default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FailurePolicy {
    /// Let the request through (without the layer's headers), trace a warning, count it.
    #[default]
    Open,
    /// Answer 503 with the layer's `*_unavailable` error and `Retry-After: 1`.
    Closed,
}
