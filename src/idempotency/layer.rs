//! [`IdempotencyLayer`] and its builder.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::Method;
use tower_layer::Layer;

use super::policy::{Config, KeyRule};
use super::service::Idempotency;
use super::store::{IdempotencyStore, Terms};
use crate::error::ConfigError;
use crate::once::{Keep, Settings};
use crate::principal::KeyExtractor;
use crate::rejection::{RenderRejection, SharedRenderer};
use crate::route::RouteMatcher;

/// Idempotency keys with Stripe's semantics; see the [module docs](super).
#[derive(Debug, Clone)]
#[must_use]
pub struct IdempotencyLayer<St> {
    store: St,
    config: Arc<Config>,
}

impl<St: IdempotencyStore> IdempotencyLayer<St> {
    /// Starts configuring a layer over `store`.
    pub fn builder(store: St) -> IdempotencyBuilder<St> {
        IdempotencyBuilder {
            store,
            methods: vec![Method::POST, Method::PATCH],
            routes: Vec::new(),
            default_rule: KeyRule::Optional,
            terms: Terms::default(),
            max_request_bytes: 1024 * 1024,
            max_response_bytes: 1024 * 1024,
            release_on_5xx: false,
            wait: None,
            extractor: KeyExtractor::new(),
            renderer: SharedRenderer::default(),
        }
    }

    /// How many times the store failed (503 answered, or an outcome not stored) since the
    /// layer was built.
    #[must_use]
    pub fn store_failures(&self) -> u64 {
        self.config.settings.store_failures.load(Ordering::Relaxed)
    }

    /// The store.
    pub fn store(&self) -> &St {
        &self.store
    }
}

impl<St: IdempotencyStore, S> Layer<S> for IdempotencyLayer<St> {
    type Service = Idempotency<St, S>;

    fn layer(&self, inner: S) -> Self::Service {
        Idempotency::new(inner, self.store.clone(), self.config.clone())
    }
}

/// Builds an [`IdempotencyLayer`].
#[must_use]
pub struct IdempotencyBuilder<St> {
    store: St,
    methods: Vec<Method>,
    routes: Vec<(String, KeyRule)>,
    default_rule: KeyRule,
    terms: Terms,
    max_request_bytes: usize,
    max_response_bytes: usize,
    release_on_5xx: bool,
    wait: Option<Duration>,
    extractor: KeyExtractor,
    renderer: SharedRenderer,
}

impl<St> std::fmt::Debug for IdempotencyBuilder<St> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdempotencyBuilder")
            .field("methods", &self.methods)
            .field("routes", &self.routes)
            .finish_non_exhaustive()
    }
}

impl<St: IdempotencyStore> IdempotencyBuilder<St> {
    /// The methods keys apply to (default POST and PATCH); on others the header is ignored.
    pub fn methods(mut self, methods: impl IntoIterator<Item = Method>) -> Self {
        self.methods = methods.into_iter().collect();
        self
    }

    /// Requests matching `pattern` (a [route pattern](crate::route), e.g.
    /// `"POST /api/v2/appointments"`) must carry a key. Routes are tried in the order added.
    pub fn require(self, pattern: &str) -> Self {
        self.route(pattern, KeyRule::Required)
    }

    /// The rule for requests matching `pattern`.
    pub fn route(mut self, pattern: &str, rule: KeyRule) -> Self {
        self.routes.push((pattern.to_string(), rule));
        self
    }

    /// The rule where no route matches (default [`KeyRule::Optional`]).
    pub fn default_rule(mut self, rule: KeyRule) -> Self {
        self.default_rule = rule;
        self
    }

    /// How long an unfinished attempt holds its key before a retry may take it over (default
    /// 60 s). Set it above the slowest handler's running time: a handler still running when its
    /// lease ends can be run a second time by a retry.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.terms.lease = lease;
        self
    }

    /// How long a finished request is replayed (default 24 hours, as Stripe keeps keys); after
    /// that the key names a new request.
    pub fn retention(mut self, retention: Duration) -> Self {
        self.terms.retention = retention;
        self
    }

    /// The largest request body read to fingerprint a keyed request (default 1 MiB); larger ones
    /// get 413.
    pub fn max_request_bytes(mut self, bytes: usize) -> Self {
        self.max_request_bytes = bytes;
        self
    }

    /// The largest response body kept for replay (default 1 MiB). A larger response is sent
    /// to the client as it streams, and retries get 409 `idempotency_response_not_kept` naming
    /// the original status: the handler never runs twice.
    pub fn max_response_bytes(mut self, bytes: usize) -> Self {
        self.max_response_bytes = bytes;
        self
    }

    /// Deletes the record of a request answered 5xx, so a retry runs the handler again
    /// (default off: errors are replayed, as Stripe and the IETF draft do).
    pub fn release_on_5xx(mut self, on: bool) -> Self {
        self.release_on_5xx = on;
        self
    }

    /// Wait mode: a duplicate arriving while the first attempt runs waits up to `max` for it
    /// to finish and then gets its replay, instead of an immediate 409. What a mobile client
    /// retrying over a slow network wants. On memory the duplicate is woken the moment the first
    /// ends; on Redis it asks the store again (first after 5 ms, backing off to 200 ms), so it
    /// works across instances sharing Redis.
    pub fn wait_for_in_flight(mut self, max: Duration) -> Self {
        self.wait = Some(max);
        self
    }

    /// How the caller is found for scoping keys (default: the principal an auth layer put in
    /// the request extensions). Callers it cannot identify share the scope `anonymous`.
    pub fn key_extractor(mut self, extractor: KeyExtractor) -> Self {
        self.extractor = extractor;
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
    /// A [`ConfigError`] for a route pattern that does not parse, no methods, a zero lease or
    /// retention, or a zero body limit.
    pub fn build(self) -> Result<IdempotencyLayer<St>, ConfigError> {
        if self.methods.is_empty() {
            return Err(ConfigError::new(
                "idempotency.methods",
                "name at least one method",
            ));
        }
        for (field, value) in [
            ("idempotency.lease", self.terms.lease),
            ("idempotency.retention", self.terms.retention),
        ] {
            if value.is_zero() {
                return Err(ConfigError::new(field, "must be more than zero"));
            }
        }
        for (field, value) in [
            ("idempotency.max_request_bytes", self.max_request_bytes),
            ("idempotency.max_response_bytes", self.max_response_bytes),
        ] {
            if value == 0 {
                return Err(ConfigError::new(field, "must be more than zero"));
            }
        }
        let mut routes = RouteMatcher::new();
        for (pattern, rule) in self.routes {
            routes = routes
                .add(&pattern, rule)
                .map_err(|e| ConfigError::new(format!("idempotency.routes.{pattern}"), e.reason))?;
        }
        let settings = Arc::new(Settings {
            terms: self.terms,
            max_response_bytes: self.max_response_bytes,
            keep: Keep::Answers {
                release_on_5xx: self.release_on_5xx,
            },
            wait: self.wait,
            renderer: self.renderer,
            layer: "idempotency",
            store_failures: AtomicU64::new(0),
        });
        Ok(IdempotencyLayer {
            store: self.store,
            config: Arc::new(Config {
                methods: self.methods,
                routes,
                default_rule: self.default_rule,
                max_request_bytes: self.max_request_bytes,
                extractor: self.extractor,
                settings,
            }),
        })
    }
}
