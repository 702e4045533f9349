//! [`AuditConfig`]: the PHI audit trail as a configuration file states it.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::layer::{buffer_fault, commit_interval_fault, subject_fault};
use super::{AuditBuilder, AuditLayer, Durability, FileSink};
use crate::error::ConfigError;
use crate::principal::TrustedProxies;
use crate::route::checked;

/// The `[audit]` section of a [`StackConfig`](crate::stack::StackConfig): a hash-chained file
/// log ([`FileSink`]) and the PHI routes. Other sinks (a Redis stream, `tracing`) are code: build
/// them and pass them to [`AuditLayer::builder`], with [`AuditConfig::builder_with`].
///
/// ```toml
/// [audit]
/// log = "audit/phi-audit.log"
/// rotate_at_bytes = 67108864
/// rotate_daily = true
/// [[audit.routes]]
/// route = "/api/v2/patients/{id}"
/// subject = "id"
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct AuditConfig {
    /// The hash-chained log file.
    pub log: PathBuf,
    /// Rotate when the live file would grow past this many bytes.
    pub rotate_at_bytes: Option<u64>,
    /// Rotate at the first record of each UTC day.
    #[serde(default)]
    pub rotate_daily: bool,
    /// The PHI routes: every request matching one gets a record.
    pub routes: Vec<PhiRouteConfig>,
    /// Query parameters whose values may appear in records (others read `REDACTED`).
    #[serde(default)]
    pub allow_query_params: Vec<String>,
    /// `fail_closed` (the default: the answer waits for the record; 503 if it cannot be written)
    /// or `buffered`.
    #[serde(default)]
    pub durability: DurabilityName,
    /// The buffer's capacity in records, when `buffered` (default 65,536; at most 16,777,216).
    pub buffer: Option<usize>,
    /// When `buffered`, drop (and count) records rather than make requests wait on a full buffer.
    #[serde(default)]
    pub drop_when_full: bool,
    /// When `buffered`, how long records gather before one commit writes them, in milliseconds
    /// (default 10, at most 1,000; see [`AuditBuilder::commit_interval`]).
    pub commit_interval_ms: Option<u64>,
}

/// An `[[audit.routes]]` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct PhiRouteConfig {
    /// The route pattern.
    pub route: String,
    /// The path parameter naming the patient or record.
    pub subject: Option<String>,
}

/// [`Durability`] by name.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum DurabilityName {
    /// [`Durability::FailClosed`].
    #[default]
    FailClosed,
    /// [`Durability::Buffered`].
    Buffered,
}

impl AuditConfig {
    /// Opens the log file, as a [`FileSink`].
    ///
    /// # Errors
    /// A [`ConfigError`] for `audit.log` when the file cannot be opened or is damaged.
    pub fn open_sink(&self) -> Result<FileSink, ConfigError> {
        let mut sink = FileSink::builder(&self.log);
        if let Some(bytes) = self.rotate_at_bytes {
            sink = sink.rotate_at_bytes(bytes);
        }
        if self.rotate_daily {
            sink = sink.rotate_daily();
        }
        sink.open().map_err(|e| {
            ConfigError::new(
                "audit.log",
                format!("cannot open {}: {e}", self.log.display()),
            )
        })
    }

    /// A builder over any `sink` with the routes and durability of this configuration.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the entry: no routes, a route that does not parse, a subject
    /// that is not one of its route's parameters, a buffer size without `durability =
    /// "buffered"` or out of range.
    pub fn builder_with<Si: super::AuditSink>(
        &self,
        sink: Si,
        proxies: &TrustedProxies,
    ) -> Result<AuditBuilder<Si>, ConfigError> {
        let durability = self.check()?;
        let mut builder = AuditLayer::builder(sink).trusted_proxies(proxies.clone());
        for route in &self.routes {
            builder = match &route.subject {
                Some(param) => builder.phi_route_with_subject(&route.route, param),
                None => builder.phi_route(&route.route),
            };
        }
        for name in &self.allow_query_params {
            builder = builder.allow_query_param(name);
        }
        if let Some(interval) = self.commit_interval() {
            builder = builder.commit_interval(interval);
        }
        Ok(builder.durability(durability))
    }

    fn commit_interval(&self) -> Option<std::time::Duration> {
        self.commit_interval_ms
            .map(std::time::Duration::from_millis)
    }

    /// Everything but the file, checked before the file is touched.
    fn check(&self) -> Result<Durability, ConfigError> {
        if self.routes.is_empty() {
            return Err(ConfigError::new(
                "audit.routes",
                "name at least one PHI route, or leave the [audit] section out",
            ));
        }
        for (i, route) in self.routes.iter().enumerate() {
            let pattern = checked(&route.route, format!("audit.routes[{i}].route"))?;
            if let Some(fault) = route
                .subject
                .as_deref()
                .and_then(|param| subject_fault(&pattern, param))
            {
                return Err(ConfigError::new(
                    format!("audit.routes[{i}].subject"),
                    fault,
                ));
            }
        }
        match self.durability {
            DurabilityName::FailClosed
                if self.buffer.is_some()
                    || self.drop_when_full
                    || self.commit_interval_ms.is_some() =>
            {
                Err(ConfigError::new(
                    "audit.durability",
                    "`buffer`, `drop_when_full` and `commit_interval_ms` need durability = \"buffered\"",
                ))
            }
            DurabilityName::FailClosed => Ok(Durability::FailClosed),
            DurabilityName::Buffered => {
                let capacity = self.buffer.unwrap_or(65_536);
                if let Some(fault) = buffer_fault(capacity) {
                    return Err(ConfigError::new("audit.buffer", fault));
                }
                if let Some(fault) = self.commit_interval().and_then(commit_interval_fault) {
                    return Err(ConfigError::new("audit.commit_interval_ms", fault));
                }
                Ok(Durability::Buffered {
                    capacity,
                    drop_when_full: self.drop_when_full,
                })
            }
        }
    }

    /// The layer: opens the log and builds. A buffered layer starts its writer task, so build
    /// it inside a Tokio runtime.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the entry under `audit`.
    pub fn build(&self, proxies: &TrustedProxies) -> Result<AuditLayer<FileSink>, ConfigError> {
        // Checked before the file is opened: a broken configuration leaves no log behind.
        self.check()?;
        self.builder_with(self.open_sink()?, proxies)?
            .build()
            .map_err(|e| e.under("audit"))
    }
}
