//! [`AuditLayer`] and its builder.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use tower_layer::Layer;

use super::policy::{Config, Counters, Coverage, PhiRoute};
use super::queue::RecordQueue;
use super::service::Audit;
use super::sink::AuditSink;
use crate::clock::{Clock, SharedClock, SystemClock};
use crate::error::ConfigError;
use crate::principal::TrustedProxies;
use crate::rejection::{RenderRejection, SharedRenderer};
use crate::route::{RouteMatcher, RoutePattern};

/// The largest buffer a layer takes, in records.
const MAX_BUFFER: usize = 1 << 24;

/// Why a buffer of `capacity` records cannot work (tokio's channel panics beyond its bound).
pub(crate) fn buffer_fault(capacity: usize) -> Option<String> {
    (!(1..=MAX_BUFFER).contains(&capacity))
        .then(|| format!("a buffer holds 1 to {MAX_BUFFER} records"))
}

/// Why `subject` cannot name a PHI route's patient: it is not one of the route's parameters,
/// and every record of the route would lack its patient, silently.
pub(crate) fn subject_fault(pattern: &RoutePattern, subject: &str) -> Option<String> {
    (!pattern.has_param(subject))
        .then(|| format!("`{subject}` is not a parameter of `{}`", pattern.template()))
}

/// How long a buffered layer lets a batch fill before handing it to its sink, by default.
const COMMIT_INTERVAL: Duration = Duration::from_millis(10);

/// The longest a buffered layer may let a batch fill: a record waits that long unwritten.
const COMMIT_INTERVAL_MAX: Duration = Duration::from_secs(1);

/// Why a buffered layer cannot let its batches fill for `interval`.
pub(crate) fn commit_interval_fault(interval: Duration) -> Option<String> {
    (interval > COMMIT_INTERVAL_MAX).then(|| {
        format!(
            "at most {} ms: a buffered record waits that long before it is written",
            COMMIT_INTERVAL_MAX.as_millis()
        )
    })
}

/// When a record must be durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Durability {
    /// The answer leaves only once its record is durable: a sink that reports itself unhealthy
    /// makes PHI routes answer 503 without running the handler, and a write that fails replaces
    /// the answer with 503. The default.
    FailClosed,
    /// Records go to a bounded queue and a background writer; the answer does not wait. The
    /// writer commits what queued over its commit interval at once (10 ms unless
    /// [`AuditBuilder::commit_interval`] says otherwise), so a record is durable about that
    /// long after its answer left, and one commit (one fsync, for the file sink) serves every
    /// record of the interval. A full queue makes requests wait
    /// (back-pressure), or, with `drop_when_full`, drops the record and counts it.
    Buffered {
        /// The queue's capacity, in records.
        capacity: usize,
        /// Drop (and count) rather than wait when the queue is full.
        drop_when_full: bool,
    },
}

/// What a PHI answer that states no `Cache-Control` gets by default: no cache may keep it.
const NO_STORE: HeaderValue = HeaderValue::from_static("no-store");

/// Counters of an [`AuditLayer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AuditStats {
    /// Records the sink took.
    pub written: u64,
    /// Records the sink refused (a failure answered 503 in fail-closed mode; in buffered mode
    /// the record is lost, and logged).
    pub failed: u64,
    /// Records dropped because the buffer was full (`drop_when_full` only).
    pub dropped: u64,
}

/// One tamper-evident record per request to a PHI route; see the [module docs](super).
#[derive(Debug, Clone)]
#[must_use]
pub struct AuditLayer<Si> {
    sink: Si,
    config: Arc<Config>,
}

impl<Si: AuditSink> AuditLayer<Si> {
    /// Starts configuring a layer writing to `sink`.
    pub fn builder(sink: Si) -> AuditBuilder<Si> {
        AuditBuilder {
            sink,
            routes: Vec::new(),
            allowed_query: Vec::new(),
            request_id: HeaderName::from_static("x-request-id"),
            proxies: TrustedProxies::none(),
            durability: Durability::FailClosed,
            commit_interval: COMMIT_INTERVAL,
            clock: Arc::new(SystemClock),
            renderer: SharedRenderer::default(),
            cache_control: NO_STORE,
            route_cache_control: Vec::new(),
        }
    }

    /// The counters so far.
    #[must_use]
    pub fn stats(&self) -> AuditStats {
        let c = &self.config.counters;
        AuditStats {
            written: c.written.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
        }
    }

    /// The sink.
    pub fn sink(&self) -> &Si {
        &self.sink
    }
}

impl<Si: AuditSink, S> Layer<S> for AuditLayer<Si> {
    type Service = Audit<Si, S>;

    fn layer(&self, inner: S) -> Self::Service {
        Audit::new(inner, self.sink.clone(), self.config.clone())
    }
}

/// Builds an [`AuditLayer`].
#[must_use]
pub struct AuditBuilder<Si> {
    sink: Si,
    routes: Vec<(String, PhiRoute)>,
    allowed_query: Vec<String>,
    request_id: HeaderName,
    proxies: TrustedProxies,
    durability: Durability,
    commit_interval: Duration,
    clock: SharedClock,
    renderer: SharedRenderer,
    cache_control: HeaderValue,
    route_cache_control: Vec<(String, HeaderValue)>,
}

impl<Si> std::fmt::Debug for AuditBuilder<Si> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditBuilder")
            .field("routes", &self.routes)
            .field("durability", &self.durability)
            .field("commit_interval", &self.commit_interval)
            .finish_non_exhaustive()
    }
}

impl<Si: AuditSink> AuditBuilder<Si> {
    /// A PHI route (a [route pattern](crate::route)); every request it matches gets a record.
    pub fn phi_route(mut self, pattern: &str) -> Self {
        self.routes.push((
            pattern.to_string(),
            PhiRoute {
                subject_param: None,
                cache_control: None,
            },
        ));
        self
    }

    /// A PHI route whose path parameter `param` names the patient or record (the record's
    /// `subject`).
    pub fn phi_route_with_subject(mut self, pattern: &str, param: &str) -> Self {
        self.routes.push((
            pattern.to_string(),
            PhiRoute {
                subject_param: Some(param.to_string()),
                cache_control: None,
            },
        ));
        self
    }

    /// The `Cache-Control` of PHI answers that state none (default `no-store`): without one, a
    /// shared cache may store an answer and guess its freshness (RFC 9111 4.2.2), and patient
    /// data would outlive the request in a proxy or CDN. An answer's own value (the handler's,
    /// or the conditional layer's on a 200 and its 304s) is kept.
    pub fn cache_control(mut self, value: HeaderValue) -> Self {
        self.cache_control = value;
        self
    }

    /// The `Cache-Control` of the answers of the PHI route added as `pattern` that state none,
    /// instead of [`cache_control`](Self::cache_control)'s (e.g. `private, max-age=300` for an
    /// app's own client cache).
    pub fn route_cache_control(mut self, pattern: &str, value: HeaderValue) -> Self {
        self.route_cache_control.push((pattern.to_string(), value));
        self
    }

    /// A query parameter whose value may appear in records (all others read `REDACTED`).
    pub fn allow_query_param(mut self, name: &str) -> Self {
        self.allowed_query.push(name.to_string());
        self
    }

    /// The header carrying the request id (default `X-Request-Id`); requests without one get
    /// a generated id, echoed in the answer.
    pub fn request_id_header(mut self, name: HeaderName) -> Self {
        self.request_id = name;
        self
    }

    /// Proxies whose `X-Forwarded-For` names the client (default: none; the peer address is
    /// recorded).
    pub fn trusted_proxies(mut self, proxies: TrustedProxies) -> Self {
        self.proxies = proxies;
        self
    }

    /// When records must be durable (default [`Durability::FailClosed`]).
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// How long a [buffered](Durability::Buffered) layer lets records gather before it hands
    /// them to the sink in one batch (default 10 ms, at most 1 s; zero hands over whatever has
    /// gathered as soon as the writer is free). Longer means fewer commits (for the file sink,
    /// fewer fsyncs and fewer wake-ups of its writer), and records durable later after their
    /// answers left.
    pub fn commit_interval(mut self, interval: Duration) -> Self {
        self.commit_interval = interval;
        self
    }

    /// The clock of the records' `time` (default: the system clock).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Replaces the problem+json renderer of the layer's own answers (503).
    pub fn renderer(mut self, renderer: impl RenderRejection) -> Self {
        self.renderer = SharedRenderer::new(renderer);
        self
    }

    /// The layer. A buffered layer starts its writer task here, so it must be built inside a
    /// Tokio runtime.
    ///
    /// # Errors
    /// A [`ConfigError`] for a route pattern that does not parse, a subject that is not one of
    /// its route's parameters, a buffer of zero or more than 16,777,216 records, or a buffered
    /// layer built outside a runtime.
    pub fn build(mut self) -> Result<AuditLayer<Si>, ConfigError> {
        for (pattern, value) in self.route_cache_control {
            let Some((_, route)) = self.routes.iter_mut().find(|(p, _)| *p == pattern) else {
                return Err(ConfigError::new(
                    format!("audit.phi_routes.{pattern}.cache_control"),
                    "not a PHI route of this layer: add it with phi_route first",
                ));
            };
            route.cache_control = Some(value);
        }
        let mut routes = RouteMatcher::new();
        for (pattern, mut route) in self.routes {
            route
                .cache_control
                .get_or_insert_with(|| self.cache_control.clone());
            let field = format!("audit.phi_routes.{pattern}");
            let parsed = crate::route::checked(&pattern, field.clone())?;
            if let Some(fault) = route
                .subject_param
                .as_deref()
                .and_then(|param| subject_fault(&parsed, param))
            {
                return Err(ConfigError::new(field, fault));
            }
            routes = routes.add(&pattern, route)?;
        }
        let counters = Arc::new(Counters::default());
        let buffer = match self.durability {
            Durability::FailClosed => None,
            Durability::Buffered {
                capacity,
                drop_when_full,
            } => {
                if let Some(fault) = buffer_fault(capacity) {
                    return Err(ConfigError::new("audit.durability", fault));
                }
                if let Some(fault) = commit_interval_fault(self.commit_interval) {
                    return Err(ConfigError::new("audit.commit_interval", fault));
                }
                let commit_interval = self.commit_interval;
                let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
                    ConfigError::new(
                        "audit.durability",
                        "a buffered audit layer must be built inside a Tokio runtime",
                    )
                })?;
                let (records, queue) = RecordQueue::bounded(capacity);
                let (sink, counters) = (self.sink.clone(), counters.clone());
                runtime.spawn(async move {
                    // Everything queued is written at once, so a sink that commits in groups
                    // (the file sink: one fsync per group) keeps up with the requests. After
                    // the first record, the batch fills for a moment: the answers do not wait
                    // for it, and one commit (one wake-up of the writer, one fsync) every
                    // interval costs far less than one per request.
                    while let Some(records) = queue.next_batch(commit_interval).await {
                        let began = std::time::Instant::now();
                        let outcomes = sink.write_batch(records).await;
                        crate::metrics::audit_write(sink.name(), began.elapsed().as_secs_f64());
                        for outcome in outcomes {
                            match outcome {
                                Ok(()) => {
                                    counters.written.fetch_add(1, Ordering::Relaxed);
                                    crate::metrics::decision!("audit", "written");
                                }
                                Err(error) => {
                                    counters.failed.fetch_add(1, Ordering::Relaxed);
                                    crate::metrics::decision!("audit", "failed");
                                    tracing::error!(layer = "audit", sink = sink.name(), %error,
                                        "a buffered audit record could not be written and is lost");
                                }
                            }
                        }
                    }
                });
                Some((records, drop_when_full))
            }
        };
        Ok(AuditLayer {
            sink: self.sink,
            config: Arc::new(Config {
                coverage: Coverage {
                    routes,
                    allowed_query: self.allowed_query,
                },
                request_id: self.request_id,
                proxies: self.proxies,
                clock: self.clock,
                renderer: self.renderer,
                buffer,
                counters,
            }),
        })
    }
}
