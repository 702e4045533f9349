//! [`VersioningConfig`]: versions and deprecations as a configuration file states them.

use serde::{Deserialize, Serialize};

use super::{
    ApiVersion, Deprecation, VersionPinStore, VersionStatus, VersioningBuilder, VersioningLayer,
};
use crate::clock::parse_instant;
use crate::error::{ConfigError, FailurePolicy};
use crate::principal::KeyExtractor;
use crate::route::checked;

/// The `[versioning]` section of a [`StackConfig`](crate::stack::StackConfig). Instants are
/// HTTP-dates, UTC times in whole seconds (`2026-12-31T23:59:59Z`, RFC 3339's form without a
/// fraction or an offset) or dates (`2026-07-01`, midnight UTC).
///
/// ```toml
/// [versioning]
/// default = "2"
/// path_prefix = true
/// header = "Api-Version"
/// migration_link = "/docs/migrate-to-v2"
/// [[versioning.versions]]
/// version = "1"
/// status = "deprecated"
/// deprecated_at = "2026-07-01"
/// sunset = "2026-12-31T23:59:59Z"
/// link = "/docs/migrate-to-v2"
/// [[versioning.versions]]
/// version = "2"
/// [[versioning.versions]]
/// version = "2024-04-10"
/// revision_of = 2
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct VersioningConfig {
    /// The version of requests that name none (`2`, `v2` or `2024-04-10`).
    pub default: String,
    /// The versions the API knows; any other is refused (410).
    pub versions: Vec<VersionConfig>,
    /// Read `v{N}` path segments.
    #[serde(default)]
    pub path_prefix: bool,
    /// A version header to read, e.g. `Api-Version`.
    pub header: Option<String>,
    /// A vendor whose media types carry a version: `application/vnd.{vendor}.v2+json`.
    pub accept_vendor: Option<String>,
    /// Pin callers to a version; `first_use` pins them on their first request naming none.
    pub pins: Option<PinRule>,
    /// Deprecations of single routes, whatever the version.
    #[serde(default)]
    pub deprecated_routes: Vec<RouteDeprecationConfig>,
    /// Where 410 answers for unknown versions point.
    pub migration_link: Option<String>,
    /// `open` (the default: pinned callers get the default version) or `closed` (503) when the
    /// pin store is down.
    #[serde(default)]
    pub on_store_error: FailurePolicy,
}

/// A `[[versioning.versions]]` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct VersionConfig {
    /// The version: `1`, `v1` or a date `2024-04-10`.
    pub version: String,
    /// `current` (the default), `deprecated` or `retired`.
    #[serde(default)]
    pub status: StatusName,
    /// The major version this dated version revises.
    pub revision_of: Option<u32>,
    /// Deprecated since (needed for `deprecated`).
    pub deprecated_at: Option<String>,
    /// When it stops being served.
    pub sunset: Option<String>,
    /// The migration guide (`Link: <url>; rel="deprecation"`; the link of 410 answers).
    pub link: Option<String>,
    /// After the sunset, answer 410 instead of serving.
    #[serde(default)]
    pub enforce_sunset: bool,
}

/// A `[[versioning.deprecated_routes]]` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RouteDeprecationConfig {
    /// The route pattern.
    pub route: String,
    /// Deprecated since.
    pub deprecated_at: String,
    /// When it stops being served.
    pub sunset: Option<String>,
    /// The migration guide.
    pub link: Option<String>,
    /// After the sunset, answer 410 instead of serving.
    #[serde(default)]
    pub enforce_sunset: bool,
}

/// A version's status by name.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum StatusName {
    /// Served, nothing announced.
    #[default]
    Current,
    /// Served with deprecation headers.
    Deprecated,
    /// Refused with 410.
    Retired,
}

/// When callers get pinned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum PinRule {
    /// Only pins set by the application count.
    Explicit,
    /// A caller without a pin is pinned to the default on first use.
    FirstUse,
}

impl VersioningConfig {
    /// A builder over `store` with this configuration and `callers`, for further settings
    /// (brownouts, a clock) before [`VersioningBuilder::build`].
    ///
    /// # Errors
    /// A [`ConfigError`] naming the entry under `versioning`.
    pub fn builder<St: VersionPinStore>(
        &self,
        store: St,
        callers: &KeyExtractor,
    ) -> Result<VersioningBuilder<St>, ConfigError> {
        let default = version(&self.default, "versioning.default".into())?;
        let mut builder = VersioningLayer::builder(store, default).key_extractor(callers.clone());
        let mut seen = Vec::with_capacity(self.versions.len());
        for (i, entry) in self.versions.iter().enumerate() {
            let field = format!("versioning.versions[{i}]");
            let version = version(&entry.version, format!("{field}.version"))?;
            if seen.contains(&version) {
                return Err(ConfigError::new(
                    format!("{field}.version"),
                    format!("{version} is listed twice"),
                ));
            }
            seen.push(version);
            if let Some(major) = entry.revision_of {
                if !matches!(version, ApiVersion::Date { .. }) {
                    return Err(ConfigError::new(
                        format!("{field}.revision_of"),
                        "only a dated version (2024-04-10) revises a major version",
                    ));
                }
                if !self
                    .versions
                    .iter()
                    .any(|v| ApiVersion::parse(&v.version) == Ok(ApiVersion::Major(major)))
                {
                    return Err(ConfigError::new(
                        format!("{field}.revision_of"),
                        format!("version {major} is not one of versioning.versions"),
                    ));
                }
            }
            let dates = Dates {
                deprecated_at: entry.deprecated_at.as_deref(),
                sunset: entry.sunset.as_deref(),
                link: entry.link.as_deref(),
                enforce_sunset: entry.enforce_sunset,
            };
            let status = match entry.status {
                StatusName::Current if dates.any() || entry.link.is_some() => {
                    return Err(ConfigError::new(
                        field,
                        "`deprecated_at`, `sunset`, `enforce_sunset` and `link` need status = \"deprecated\" (or \"retired\" for `link`)",
                    ));
                }
                StatusName::Retired if dates.any() => {
                    return Err(ConfigError::new(
                        field,
                        "`deprecated_at`, `sunset` and `enforce_sunset` need status = \"deprecated\"",
                    ));
                }
                StatusName::Current => VersionStatus::Current,
                StatusName::Retired => VersionStatus::Retired {
                    link: entry.link.clone(),
                },
                StatusName::Deprecated => VersionStatus::Deprecated(dates.deprecation(&field)?),
            };
            builder = builder.version(version, status);
            if let Some(major) = entry.revision_of {
                builder = builder.revision_of(version, major);
            }
        }
        if self.path_prefix {
            builder = builder.path_prefix();
        }
        if let Some(header) = &self.header {
            builder = builder.header(header);
        }
        if let Some(vendor) = &self.accept_vendor {
            builder = builder.accept_vendor(vendor);
        }
        match self.pins {
            None => {}
            Some(PinRule::Explicit) => builder = builder.pins(false),
            Some(PinRule::FirstUse) => builder = builder.pins(true),
        }
        for (i, route) in self.deprecated_routes.iter().enumerate() {
            let field = format!("versioning.deprecated_routes[{i}]");
            checked(&route.route, format!("{field}.route"))?;
            let dates = Dates {
                deprecated_at: Some(&route.deprecated_at),
                sunset: route.sunset.as_deref(),
                link: route.link.as_deref(),
                enforce_sunset: route.enforce_sunset,
            };
            builder = builder.deprecate_route(&route.route, dates.deprecation(&field)?);
        }
        if let Some(link) = &self.migration_link {
            builder = builder.migration_link(link);
        }
        Ok(builder.on_store_error(self.on_store_error))
    }

    /// The layer over `store` with this configuration and `callers`.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the entry under `versioning`, including a sunset earlier than
    /// its deprecation (RFC 9745).
    pub fn build<St: VersionPinStore>(
        &self,
        store: St,
        callers: &KeyExtractor,
    ) -> Result<VersioningLayer<St>, ConfigError> {
        self.builder(store, callers)?
            .build()
            .map_err(|e| e.under("versioning"))
    }
}

/// The deprecation settings an entry wrote.
struct Dates<'a> {
    deprecated_at: Option<&'a str>,
    sunset: Option<&'a str>,
    link: Option<&'a str>,
    enforce_sunset: bool,
}

impl Dates<'_> {
    fn any(&self) -> bool {
        self.deprecated_at.is_some() || self.sunset.is_some() || self.enforce_sunset
    }

    fn deprecation(&self, field: &str) -> Result<Deprecation, ConfigError> {
        let instant = |text: &str, name: &str| {
            parse_instant(text).ok_or_else(|| {
                ConfigError::new(
                    format!("{field}.{name}"),
                    format!(
                        "`{text}` is not a date (2026-12-31), an RFC 3339 UTC time \
                         (2026-12-31T23:59:59Z) or an HTTP-date"
                    ),
                )
            })
        };
        let Some(since) = self.deprecated_at else {
            return Err(ConfigError::new(
                format!("{field}.deprecated_at"),
                "a deprecated version needs the date it was (or will be) deprecated",
            ));
        };
        let since = instant(since, "deprecated_at")?;
        let mut deprecation = Deprecation::since(since);
        if let Some(sunset) = self.sunset {
            let sunset = instant(sunset, "sunset")?;
            if sunset < since {
                // RFC 9745: a resource cannot be gone before it was deprecated.
                return Err(ConfigError::new(
                    format!("{field}.sunset"),
                    "the sunset is earlier than `deprecated_at`",
                ));
            }
            deprecation = deprecation.sunset(sunset);
        } else if self.enforce_sunset {
            return Err(ConfigError::new(
                format!("{field}.enforce_sunset"),
                "there is no `sunset` to enforce",
            ));
        }
        if let Some(link) = self.link {
            deprecation = deprecation.link(link);
        }
        if self.enforce_sunset {
            deprecation = deprecation.enforce_sunset();
        }
        Ok(deprecation)
    }
}

fn version(text: &str, field: String) -> Result<ApiVersion, ConfigError> {
    ApiVersion::parse(text).map_err(|_| {
        ConfigError::new(
            field,
            format!("`{text}` is not a version: a number (2, v2) or a date (2024-04-10)"),
        )
    })
}
