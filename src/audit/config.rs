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
/// # answers that state no Cache-Control get "no-store" unless a route or the section says:
/// # cache_control = "private, max-age=300"
/// [audit.checkpoints]            # signed checkpoints (feature `audit-signing`)
/// key_file = "audit-signing.pem" # or key_env = "AUDIT_SIGNING_KEY"
/// every_records = 1000
/// every_secs = 60
/// previous_public_keys = []     # after a key change: the earlier keys' public PEM files
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
    /// The `Cache-Control` of PHI answers that state none (default `no-store`; see
    /// [`AuditBuilder::cache_control`]).
    pub cache_control: Option<String>,
    /// Open a log that has records but no head file (see
    /// [`FileSinkBuilder::accept_unanchored`](super::sink::FileSinkBuilder::accept_unanchored)).
    #[serde(default)]
    pub accept_unanchored: bool,
    /// Signed checkpoints of the log (feature `audit-signing`).
    pub checkpoints: Option<CheckpointConfig>,
}

/// The `[audit.checkpoints]` section: the signing key, and how often to seal (see
/// [`Checkpoints`](super::Checkpoints), feature `audit-signing`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct CheckpointConfig {
    /// A file holding the Ed25519 private key (PKCS#8 PEM, as `openssl genpkey -algorithm
    /// ed25519` writes it).
    pub key_file: Option<PathBuf>,
    /// An environment variable holding the key's PEM (or the base64 of its DER), instead.
    pub key_env: Option<String>,
    /// A checkpoint once this many records are unsealed (default 1,000).
    pub every_records: Option<u64>,
    /// A checkpoint once a record has waited this many seconds unsealed (default 60).
    pub every_secs: Option<u64>,
    /// Public keys (PEM files) the log was signed with before this key (see
    /// [`Checkpoints::previous_key`](super::Checkpoints::previous_key)).
    #[serde(default)]
    pub previous_public_keys: Vec<PathBuf>,
    /// Seal records after the last checkpoint that no signed head vouches for, once (see
    /// [`Checkpoints::accept_unsealed`](super::Checkpoints::accept_unsealed)).
    #[serde(default)]
    pub accept_unsealed: bool,
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
    /// The `Cache-Control` of this route's answers that state none, instead of the section's.
    pub cache_control: Option<String>,
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
        if self.accept_unanchored {
            sink = sink.accept_unanchored();
        }
        if let Some(section) = &self.checkpoints {
            sink = with_checkpoints(sink, section)?;
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
        if let Some(value) = &self.cache_control {
            builder = builder.cache_control(header_value(value, "audit.cache_control")?);
        }
        for (i, route) in self.routes.iter().enumerate() {
            builder = match &route.subject {
                Some(param) => builder.phi_route_with_subject(&route.route, param),
                None => builder.phi_route(&route.route),
            };
            if let Some(value) = &route.cache_control {
                let field = format!("audit.routes[{i}].cache_control");
                builder = builder.route_cache_control(&route.route, header_value(value, field)?);
            }
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
        if let Some(value) = &self.cache_control {
            header_value(value, "audit.cache_control")?;
        }
        for (i, route) in self.routes.iter().enumerate() {
            let pattern = checked(&route.route, format!("audit.routes[{i}].route"))?;
            if let Some(value) = &route.cache_control {
                header_value(value, format!("audit.routes[{i}].cache_control"))?;
            }
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

/// A `Cache-Control` value from the configuration.
fn header_value(
    value: &str,
    field: impl Into<std::borrow::Cow<'static, str>>,
) -> Result<http::HeaderValue, ConfigError> {
    http::HeaderValue::from_str(value)
        .ok()
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ConfigError::new(field, format!("`{value}` is not a header value")))
}

/// The file sink with the section's checkpoints.
#[cfg(feature = "audit-signing")]
fn with_checkpoints(
    sink: super::sink::FileSinkBuilder,
    section: &CheckpointConfig,
) -> Result<super::sink::FileSinkBuilder, ConfigError> {
    let key = match (&section.key_file, &section.key_env) {
        (Some(file), None) => super::SigningKey::from_file(file),
        (None, Some(var)) => super::SigningKey::from_env(var),
        _ => {
            return Err(ConfigError::new(
                "audit.checkpoints",
                "name the signing key with one of key_file and key_env",
            ));
        }
    }
    .map_err(|e| ConfigError::new("audit.checkpoints", e.to_string()))?;
    let mut checkpoints = super::Checkpoints::new(key);
    if let Some(records) = section.every_records {
        checkpoints = checkpoints.every_records(records);
    }
    if let Some(secs) = section.every_secs {
        checkpoints = checkpoints.every(std::time::Duration::from_secs(secs));
    }
    for (i, path) in section.previous_public_keys.iter().enumerate() {
        let key = super::PublicKey::from_file(path).map_err(|e| {
            ConfigError::new(
                format!("audit.checkpoints.previous_public_keys[{i}]"),
                e.to_string(),
            )
        })?;
        checkpoints = checkpoints.previous_key(key);
    }
    if section.accept_unsealed {
        checkpoints = checkpoints.accept_unsealed();
    }
    Ok(sink.checkpoints(checkpoints))
}

#[cfg(not(feature = "audit-signing"))]
fn with_checkpoints(
    _sink: super::sink::FileSinkBuilder,
    _section: &CheckpointConfig,
) -> Result<super::sink::FileSinkBuilder, ConfigError> {
    Err(ConfigError::new(
        "audit.checkpoints",
        "signed checkpoints need the `audit-signing` feature",
    ))
}
