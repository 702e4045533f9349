//! The compiled versioning policy: what the builder makes and the service reads (the versions
//! and where each stands, how a client names one, the announcements of deprecations).

use std::sync::Arc;

use http::{HeaderName, HeaderValue};

use super::deprecation::Deprecation;
use super::version::ApiVersion;
use crate::clock::SharedClock;
use crate::principal::KeyExtractor;
use crate::rejection::SharedRenderer;
use crate::route::RouteMatcher;

/// Where a version stands.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum VersionStatus {
    /// Served, nothing announced.
    Current,
    /// Served with `Deprecation`, `Sunset` and `Link` headers, every call counted; refused
    /// after an enforced sunset and during brownouts.
    Deprecated(Deprecation),
    /// No longer served: 410 with the migration link.
    Retired {
        /// Where to read how to migrate.
        link: Option<String>,
    },
}

/// An explicit way a client names its version, tried in the order added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Explicit {
    Header(HeaderName),
    Accept(String),
}

/// Headers a deprecation puts on every answer, computed once.
pub(crate) type Announcement = Arc<[(HeaderName, HeaderValue)]>;

pub(crate) fn announcement(deprecation: &Deprecation) -> Announcement {
    let mut headers = vec![(
        HeaderName::from_static("deprecation"),
        deprecation.deprecation_value(),
    )];
    if let Some(sunset) = deprecation.sunset_value() {
        headers.push((HeaderName::from_static("sunset"), sunset));
    }
    for link in deprecation.link_values() {
        headers.push((http::header::LINK, link));
    }
    headers.into()
}

/// By version.
pub(crate) type VersionMap<V> = crate::config_map::ConfigMap<ApiVersion, V>;

pub(crate) struct Config {
    pub(crate) versions: VersionMap<VersionStatus>,
    /// Per served version: its echo value, and its deprecation's headers.
    pub(crate) served: VersionMap<(HeaderValue, Option<Announcement>)>,
    /// The major version a dated version revises: a path's `v2` accepts the dates of `v2`.
    pub(crate) families: VersionMap<u32>,
    pub(crate) path: bool,
    pub(crate) explicit: Vec<Explicit>,
    pub(crate) pins: bool,
    pub(crate) pin_on_first_use: bool,
    pub(crate) default: ApiVersion,
    pub(crate) routes: RouteMatcher<(Deprecation, Announcement)>,
    pub(crate) echo: Option<HeaderName>,
    pub(crate) vary: Vec<HeaderValue>,
    pub(crate) on_store_error: crate::FailurePolicy,
    pub(crate) migration_link: Option<String>,
    pub(crate) extractor: KeyExtractor,
    pub(crate) clock: SharedClock,
    pub(crate) renderer: SharedRenderer,
}

impl Config {
    /// The major version a version belongs to: its own number, or the one a date revises.
    pub(crate) fn family(&self, version: ApiVersion) -> Option<u32> {
        match version {
            ApiVersion::Major(n) => Some(n),
            date => self.families.get(&date).copied(),
        }
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("versions", &self.versions)
            .field("default", &self.default)
            .finish_non_exhaustive()
    }
}
