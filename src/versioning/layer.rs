//! [`VersioningLayer`] and its builder.

use std::sync::Arc;

use http::{HeaderName, HeaderValue};
use tower_layer::Layer;

use super::deprecation::Deprecation;
use super::policy::{Config, Explicit, VersionMap, VersionStatus, announcement};
use super::service::Versioning;
use super::store::VersionPinStore;
use super::version::ApiVersion;
use crate::clock::{Clock, SharedClock, SystemClock};
use crate::error::ConfigError;
use crate::principal::KeyExtractor;
use crate::rejection::{RenderRejection, SharedRenderer};
use crate::route::RouteMatcher;

/// API versions: resolution, deprecation headers, sunsets and brownouts, pins and a usage
/// report; see the [module docs](super).
#[derive(Debug, Clone)]
#[must_use]
pub struct VersioningLayer<St> {
    store: St,
    config: Arc<Config>,
}

impl<St: VersionPinStore> VersioningLayer<St> {
    /// Starts configuring a layer over `store`; `default` is the version of requests that name
    /// none (and the one first-use pins take).
    pub fn builder(store: St, default: ApiVersion) -> VersioningBuilder<St> {
        VersioningBuilder {
            store,
            versions: Vec::new(),
            families: Vec::new(),
            path: false,
            explicit: Vec::new(),
            pins: false,
            pin_on_first_use: false,
            default,
            routes: Vec::new(),
            echo: Some(HeaderName::from_static("api-version")),
            migration_link: None,
            extractor: KeyExtractor::new(),
            clock: Arc::new(SystemClock),
            renderer: SharedRenderer::default(),
            invalid: None,
            on_store_error: crate::FailurePolicy::Open,
        }
    }

    /// The store, e.g. to read the usage report or to move a caller's pin.
    pub fn store(&self) -> &St {
        &self.store
    }

    /// Who called `version` over the last `days` days (today included; `0` is read as `1`),
    /// most calls first.
    ///
    /// # Errors
    /// The store's error.
    pub async fn usage(
        &self,
        version: ApiVersion,
        days: u64,
    ) -> Result<Vec<super::Usage>, crate::StoreError> {
        let today = crate::clock::day_of(self.config.clock.now_micros() / 1_000_000);
        let first = today.saturating_sub(days.saturating_sub(1));
        self.store.usage(version, first, today).await
    }

    /// The deprecation of `version`, if it is deprecated.
    #[must_use]
    pub fn deprecation(&self, version: ApiVersion) -> Option<&Deprecation> {
        match self.config.versions.get(&version) {
            Some(VersionStatus::Deprecated(d)) => Some(d),
            _ => None,
        }
    }

    /// The deprecated versions, for a report.
    #[must_use]
    pub fn deprecated_versions(&self) -> Vec<ApiVersion> {
        let mut versions: Vec<ApiVersion> = self
            .config
            .versions
            .iter()
            .filter(|(_, s)| matches!(s, VersionStatus::Deprecated(_)))
            .map(|(v, _)| *v)
            .collect();
        versions.sort();
        versions
    }
}

impl<St: VersionPinStore, S> Layer<S> for VersioningLayer<St> {
    type Service = Versioning<St, S>;

    fn layer(&self, inner: S) -> Self::Service {
        Versioning::new(inner, self.store.clone(), self.config.clone())
    }
}

/// Builds a [`VersioningLayer`].
#[must_use]
pub struct VersioningBuilder<St> {
    store: St,
    versions: Vec<(ApiVersion, VersionStatus)>,
    families: Vec<(ApiVersion, u32)>,
    path: bool,
    explicit: Vec<Explicit>,
    pins: bool,
    pin_on_first_use: bool,
    default: ApiVersion,
    routes: Vec<(String, Deprecation)>,
    echo: Option<HeaderName>,
    migration_link: Option<String>,
    extractor: KeyExtractor,
    clock: SharedClock,
    renderer: SharedRenderer,
    invalid: Option<ConfigError>,
    on_store_error: crate::FailurePolicy,
}

impl<St> std::fmt::Debug for VersioningBuilder<St> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VersioningBuilder")
            .field("versions", &self.versions)
            .finish_non_exhaustive()
    }
}

impl<St: VersionPinStore> VersioningBuilder<St> {
    /// A version the API knows, and where it stands. Versions not named here are unknown: 410.
    pub fn version(mut self, version: ApiVersion, status: VersionStatus) -> Self {
        self.versions.push((version, status));
        self
    }

    /// Declares a dated version a revision of major version `major`, so a `v{major}` path
    /// accepts it in the header (any other dated version there is 400 `version_conflict`).
    pub fn revision_of(mut self, version: ApiVersion, major: u32) -> Self {
        self.families.push((version, major));
        self
    }

    /// Reads `v{N}` path segments (`/api/v2/...`). A path's version decides unless an explicit
    /// version of the same major refines it.
    pub fn path_prefix(mut self) -> Self {
        self.path = true;
        self
    }

    /// Reads a version header (`Api-Version: 2024-04-10`, as `Stripe-Version` or
    /// `X-GitHub-Api-Version`); also the header the resolved version is echoed in. An invalid
    /// name is reported by [`build`](Self::build).
    pub fn header(mut self, name: &str) -> Self {
        match HeaderName::from_bytes(name.as_bytes()) {
            Ok(name) => {
                self.echo = Some(name.clone());
                self.explicit.push(Explicit::Header(name));
            }
            Err(_) => {
                self.invalid.get_or_insert_with(|| {
                    ConfigError::new(
                        "versioning.header",
                        format!("`{name}` is not a header name"),
                    )
                });
            }
        }
        self
    }

    /// Reads vendor media types: `Accept: application/vnd.{vendor}.v2+json`.
    pub fn accept_vendor(mut self, vendor: &str) -> Self {
        self.explicit.push(Explicit::Accept(vendor.to_string()));
        self
    }

    /// Requests naming no version get the caller's pinned one (callers found by the
    /// [`KeyExtractor`]); with `on_first_use`, a caller without a pin is pinned to the default
    /// on its first such request, as Stripe pins an account to the version it started on.
    pub fn pins(mut self, on_first_use: bool) -> Self {
        self.pins = true;
        self.pin_on_first_use = on_first_use;
        self
    }

    /// Deprecates the routes matching `pattern` (a [route pattern](crate::route)) whatever the
    /// version.
    pub fn deprecate_route(mut self, pattern: &str, deprecation: Deprecation) -> Self {
        self.routes.push((pattern.to_string(), deprecation));
        self
    }

    /// The header the resolved version is echoed in (default `Api-Version`, or the version
    /// header's name); `None` to echo nothing. An invalid name is reported by
    /// [`build`](Self::build).
    pub fn echo_header(mut self, name: Option<&str>) -> Self {
        self.echo = match name.map(|n| HeaderName::from_bytes(n.as_bytes())) {
            None => None,
            Some(Ok(name)) => Some(name),
            Some(Err(_)) => {
                self.invalid.get_or_insert_with(|| {
                    ConfigError::new("versioning.echo_header", "not a header name")
                });
                None
            }
        };
        self
    }

    /// What a pinned caller gets when the pin store cannot answer: the default version (open,
    /// the default: logged, and the version's source says `Default`), or 503
    /// `versioning_unavailable` (closed: a pinned client never silently gets another version).
    pub fn on_store_error(mut self, policy: crate::FailurePolicy) -> Self {
        self.on_store_error = policy;
        self
    }

    /// The migration guide that 410 answers for unknown versions link to.
    pub fn migration_link(mut self, url: &str) -> Self {
        self.migration_link = Some(url.to_string());
        self
    }

    /// How callers are found for pins and the usage report (default: the principal an auth
    /// layer put in the request extensions).
    pub fn key_extractor(mut self, extractor: KeyExtractor) -> Self {
        self.extractor = extractor;
        self
    }

    /// The clock sunsets and brownouts are judged by (default: the system clock).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Replaces the problem+json renderer of the layer's own answers.
    pub fn renderer(mut self, renderer: impl RenderRejection) -> Self {
        self.renderer = SharedRenderer::new(renderer);
        self
    }

    /// The layer.
    ///
    /// # Errors
    /// A [`ConfigError`] for a deprecation whose sunset is earlier than its date (RFC 9745),
    /// an unknown or retired default, a version named twice, an invalid header name or route
    /// pattern, or a revision that is not a dated version.
    pub fn build(self) -> Result<VersioningLayer<St>, ConfigError> {
        if let Some(error) = self.invalid {
            return Err(error);
        }
        let mut versions = VersionMap::default();
        for (version, status) in self.versions {
            let field = format!("versioning.versions.{version}");
            if let VersionStatus::Deprecated(d) = &status {
                d.validate(&field)?;
            }
            if versions.insert(version, status).is_some() {
                return Err(ConfigError::new(field, "named twice"));
            }
        }
        match versions.get(&self.default) {
            Some(VersionStatus::Retired { .. }) | None => {
                return Err(ConfigError::new(
                    "versioning.default",
                    format!("`{}` is not a served version", self.default),
                ));
            }
            Some(_) => {}
        }
        let mut families = VersionMap::default();
        for (version, major) in self.families {
            if matches!(version, ApiVersion::Major(_)) || !versions.contains_key(&version) {
                return Err(ConfigError::new(
                    format!("versioning.revisions.{version}"),
                    "a revision is a dated version the layer knows",
                ));
            }
            families.insert(version, major);
        }
        let mut vary = Vec::new();
        for explicit in &self.explicit {
            match explicit {
                Explicit::Header(name) => vary.push(HeaderValue::from(name.clone())),
                Explicit::Accept(_) => vary.push(HeaderValue::from_static("accept")),
            }
        }
        let mut routes = RouteMatcher::new();
        for (pattern, deprecation) in self.routes {
            let field = format!("versioning.routes.{pattern}");
            deprecation.validate(&field)?;
            let headers = announcement(&deprecation);
            routes = routes
                .add(&pattern, (deprecation, headers))
                .map_err(|e| ConfigError::new(field, e.reason))?;
        }
        let served = versions
            .iter()
            .filter_map(|(version, status)| {
                let echo = HeaderValue::from_str(&version.to_string()).ok()?;
                match status {
                    VersionStatus::Current => Some((*version, (echo, None))),
                    VersionStatus::Deprecated(d) => Some((*version, (echo, Some(announcement(d))))),
                    VersionStatus::Retired { .. } => None,
                }
            })
            .collect();
        Ok(VersioningLayer {
            store: self.store,
            config: Arc::new(Config {
                versions,
                served,
                families,
                path: self.path,
                explicit: self.explicit,
                pins: self.pins,
                pin_on_first_use: self.pin_on_first_use,
                default: self.default,
                routes,
                echo: self.echo,
                vary,
                on_store_error: self.on_store_error,
                migration_link: self.migration_link,
                extractor: self.extractor,
                clock: self.clock,
                renderer: self.renderer,
            }),
        })
    }
}
