//! [`ConditionalLayer`]: configuration, built once, shared by every clone of the service.

use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;
use tower_layer::Layer;

use super::policy::{CompiledRule, Config, Current, Lookup, Resource};
use super::service::Conditional;
use super::store::ValidatorStore;
use crate::error::{ConfigError, StoreError};
use crate::rejection::{RenderRejection, SharedRenderer};
use crate::route::RouteMatcher;

/// What the layer does on the requests a route pattern matches.
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct ResourceRule {
    pub(crate) cache_control: Option<String>,
    pub(crate) require_preconditions: bool,
    pub(crate) fast_not_modified: bool,
}

impl ResourceRule {
    /// A resource: its validators are tracked (learned from responses, or looked up) so that
    /// `PUT`, `PATCH`, `DELETE` and `POST` preconditions are decided before the handler runs,
    /// under a per-resource write lock.
    pub fn resource() -> Self {
        Self::default()
    }

    /// `Cache-Control` for its `200` and `304` answers to `GET`/`HEAD` when the handler sets
    /// none (e.g. `private, max-age=300`).
    pub fn cache_control(mut self, value: &str) -> Self {
        self.cache_control = Some(value.to_string());
        self
    }

    /// Updates (`PUT`, `PATCH`, `DELETE`) must carry `If-Match` or `If-Unmodified-Since`: 428
    /// without (RFC 6585).
    pub fn require_preconditions(mut self) -> Self {
        self.require_preconditions = true;
        self
    }

    /// Answers a `GET`/`HEAD` whose `If-None-Match` matches the validators the store holds
    /// with 304 without calling the handler. Only right when every change to the resource goes
    /// through this layer: a change made elsewhere is not seen until the validators are learned
    /// again. The 304 carries `ETag`, `Last-Modified` and the route's `Cache-Control`, not a
    /// `Vary` or `Content-Location` the handler would have set; and since the handler does not
    /// run, neither do its object-level checks: keep authorization that decides who may read
    /// the resource in a layer outside this one, or leave the fast path off.
    pub fn fast_not_modified(mut self) -> Self {
        self.fast_not_modified = true;
        self
    }
}

/// ETags, 304s and decided-before-the-handler preconditions; see the [module docs](super).
#[derive(Debug, Clone)]
#[must_use]
pub struct ConditionalLayer<St> {
    store: St,
    config: Arc<Config>,
}

impl<St: ValidatorStore> ConditionalLayer<St> {
    /// Starts configuring a layer over `store`.
    pub fn builder(store: St) -> ConditionalBuilder<St> {
        ConditionalBuilder {
            store,
            routes: Vec::new(),
            max_body_bytes: 1024 * 1024,
            validator_ttl: Duration::from_secs(3600),
            lease: Duration::from_secs(30),
            lock_wait: Duration::from_secs(10),
            lookup: None,
            renderer: SharedRenderer::default(),
        }
    }
}

impl<St: ValidatorStore, S> Layer<S> for ConditionalLayer<St> {
    type Service = Conditional<St, S>;

    fn layer(&self, inner: S) -> Self::Service {
        Conditional::new(inner, self.store.clone(), self.config.clone())
    }
}

/// Builds a [`ConditionalLayer`].
#[must_use]
pub struct ConditionalBuilder<St> {
    store: St,
    routes: Vec<(String, ResourceRule)>,
    max_body_bytes: usize,
    validator_ttl: Duration,
    lease: Duration,
    lock_wait: Duration,
    lookup: Option<Lookup>,
    renderer: SharedRenderer,
}

impl<St> std::fmt::Debug for ConditionalBuilder<St> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConditionalBuilder")
            .field("routes", &self.routes)
            .finish_non_exhaustive()
    }
}

impl<St: ValidatorStore> ConditionalBuilder<St> {
    /// A resource route (a [route pattern](crate::route) without a method, e.g.
    /// `/api/v2/appointments/{id}`), tried in the order added.
    pub fn resource(mut self, pattern: &str, rule: ResourceRule) -> Self {
        self.routes.push((pattern.to_string(), rule));
        self
    }

    /// The largest response body digested into an ETag (default 1 MiB); larger ones stream
    /// through without one.
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body_bytes = bytes;
        self
    }

    /// How long learned validators are trusted (default 1 hour).
    pub fn validator_ttl(mut self, ttl: Duration) -> Self {
        self.validator_ttl = ttl;
        self
    }

    /// How long an update holds its resource's write lock at most (default 30 s), and how long a
    /// concurrent update waits for it (default 10 s; then 503 `resource_busy`).
    pub fn lock(mut self, lease: Duration, wait: Duration) -> Self {
        self.lease = lease;
        self.lock_wait = wait;
        self
    }

    /// Asks the application for a resource's current validators (a version column, an
    /// `updated_at`) instead of learning them from responses. Called under the resource's
    /// write lock, before an update's preconditions are decided.
    pub fn lookup<F, Fut>(mut self, lookup: F) -> Self
    where
        F: Fn(Resource) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<Current, StoreError>> + Send + 'static,
    {
        self.lookup = Some(Arc::new(move |resource| Box::pin(lookup(resource))));
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
    /// A [`ConfigError`] for a route pattern that does not parse or names a method, an invalid
    /// `Cache-Control` value, or a zero limit, TTL or lease.
    pub fn build(self) -> Result<ConditionalLayer<St>, ConfigError> {
        if self.max_body_bytes == 0 {
            return Err(ConfigError::new(
                "conditional.max_body_bytes",
                "must be more than zero",
            ));
        }
        if self.validator_ttl.is_zero() || self.lease.is_zero() {
            return Err(ConfigError::new(
                "conditional.lock",
                "the validator TTL and the lease must be more than zero",
            ));
        }
        let mut routes = RouteMatcher::new();
        for (pattern, rule) in self.routes {
            let field = format!("conditional.resources.{pattern}");
            if pattern.trim().contains(' ') {
                return Err(ConfigError::new(
                    field,
                    "a resource covers every method: write the path alone",
                ));
            }
            let cache_control = rule
                .cache_control
                .map(|v| HeaderValue::from_str(&v))
                .transpose()
                .map_err(|_| {
                    ConfigError::new(field.clone(), "Cache-Control is not a valid header value")
                })?;
            let compiled = CompiledRule {
                cache_control,
                require_preconditions: rule.require_preconditions,
                fast_not_modified: rule.fast_not_modified,
            };
            routes = routes
                .add(&pattern, compiled)
                .map_err(|e| ConfigError::new(field, e.reason))?;
        }
        Ok(ConditionalLayer {
            store: self.store,
            config: Arc::new(Config {
                routes,
                max_body_bytes: self.max_body_bytes,
                validator_ttl: self.validator_ttl,
                lease: self.lease,
                lock_wait: self.lock_wait,
                lookup: self.lookup,
                renderer: self.renderer,
            }),
        })
    }
}
