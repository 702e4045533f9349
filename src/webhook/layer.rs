//! [`WebhookLayer`]: verified, de-duplicated webhook deliveries.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use tower_layer::Layer;

use super::policy::{Config, EventId, Scheme};
use super::service::Webhook;
use super::signature::{HmacHeader, WebhookSecret};
use crate::clock::{Clock, SharedClock, SystemClock};
use crate::error::ConfigError;
use crate::idempotency::{IdempotencyStore, Terms};
use crate::once::{Keep, Settings};
use crate::rejection::{RenderRejection, SharedRenderer};

/// Verifies webhook signatures and runs each event once; see the [module docs](super).
#[derive(Debug, Clone)]
#[must_use]
pub struct WebhookLayer<St> {
    store: St,
    config: Arc<Config>,
}

impl<St: IdempotencyStore> WebhookLayer<St> {
    /// Stripe deliveries: `Stripe-Signature` checked against `secret` (the endpoint's `whsec_...`
    /// signing secret) with a 300 s tolerance, events de-duplicated by their `id`.
    pub fn stripe(store: St, secret: impl AsRef<[u8]>) -> WebhookBuilder<St> {
        WebhookBuilder::new(
            store,
            "stripe",
            Scheme::Stripe {
                tolerance_secs: 300,
            },
            EventId::JsonPointer("/id".into()),
        )
        .secret(secret)
    }

    /// Deliveries signed by one HMAC-SHA256 header (see [`HmacHeader`]), for other providers;
    /// `name` scopes their event ids. Events are not de-duplicated until
    /// [`event_id`](WebhookBuilder::event_id) says where their id is.
    pub fn hmac(
        store: St,
        name: &str,
        header: HmacHeader,
        secret: impl AsRef<[u8]>,
    ) -> WebhookBuilder<St> {
        WebhookBuilder::new(store, name, Scheme::Hmac(header), EventId::None).secret(secret)
    }

    /// How many times the store failed since the layer was built.
    #[must_use]
    pub fn store_failures(&self) -> u64 {
        self.config
            .settings
            .store_failures
            .load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl<St: IdempotencyStore, S> Layer<S> for WebhookLayer<St> {
    type Service = Webhook<St, S>;

    fn layer(&self, inner: S) -> Self::Service {
        Webhook::new(inner, self.store.clone(), self.config.clone())
    }
}

/// Builds a [`WebhookLayer`].
#[must_use]
pub struct WebhookBuilder<St> {
    store: St,
    name: String,
    scheme: Scheme,
    secrets: Vec<Result<WebhookSecret, ConfigError>>,
    event_id: EventId,
    max_body_bytes: usize,
    terms: Terms,
    clock: SharedClock,
    renderer: SharedRenderer,
}

impl<St> std::fmt::Debug for WebhookBuilder<St> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookBuilder")
            .field("name", &self.name)
            .field("scheme", &self.scheme)
            .finish_non_exhaustive()
    }
}

impl<St: IdempotencyStore> WebhookBuilder<St> {
    fn new(store: St, name: &str, scheme: Scheme, event_id: EventId) -> Self {
        Self {
            store,
            name: name.to_string(),
            scheme,
            secrets: Vec::new(),
            event_id,
            max_body_bytes: 1024 * 1024,
            terms: Terms {
                // A handler that takes longer than this is taken over by the sender's retry.
                lease: Duration::from_secs(60),
                // Stripe retries for up to three days; a week covers it with room.
                retention: Duration::from_secs(7 * 24 * 3600),
            },
            clock: Arc::new(SystemClock),
            renderer: SharedRenderer::default(),
        }
    }

    /// The endpoint's name (default `stripe`, or the name given to [`WebhookLayer::hmac`]): event
    /// ids are remembered per name, so two endpoints sharing a store (a Stripe account endpoint
    /// and a Connect endpoint, both sent `evt_1`) each handle their delivery.
    pub fn name(mut self, name: &str) -> Self {
        self.name = name.to_string();
        self
    }

    /// Another secret that is accepted too: during a rotation, both the old and the new one.
    pub fn secret(mut self, secret: impl AsRef<[u8]>) -> Self {
        self.secrets.push(WebhookSecret::new(secret));
        self
    }

    /// How far a Stripe timestamp may be from now (default 300 s, Stripe's own). Has no effect
    /// on HMAC-header schemes, which sign no timestamp.
    pub fn tolerance(mut self, tolerance: Duration) -> Self {
        if let Scheme::Stripe { tolerance_secs } = &mut self.scheme {
            *tolerance_secs = tolerance.as_secs();
        }
        self
    }

    /// Where the event id is (default `/id` in the JSON body for Stripe, none otherwise).
    pub fn event_id(mut self, event_id: EventId) -> Self {
        self.event_id = event_id;
        self
    }

    /// The largest body read (default 1 MiB); larger deliveries get 413.
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body_bytes = bytes;
        self
    }

    /// How long a handled event id is remembered (default 7 days).
    pub fn retention(mut self, retention: Duration) -> Self {
        self.terms.retention = retention;
        self
    }

    /// How long a delivery being handled holds its event id (default 60 s).
    pub fn lease(mut self, lease: Duration) -> Self {
        self.terms.lease = lease;
        self
    }

    /// The clock timestamps are checked against (default: the system clock).
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
    /// A [`ConfigError`] for an empty secret, a zero body limit, lease or retention, or an
    /// event-id pointer that does not start with `/`.
    pub fn build(self) -> Result<WebhookLayer<St>, ConfigError> {
        let secrets = self
            .secrets
            .into_iter()
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ConfigError::new("webhook.secret", e.reason))?;
        if self.max_body_bytes == 0 {
            return Err(ConfigError::new(
                "webhook.max_body_bytes",
                "must be more than zero",
            ));
        }
        if self.terms.lease.is_zero() || self.terms.retention.is_zero() {
            return Err(ConfigError::new(
                "webhook.retention",
                "lease and retention must be more than zero",
            ));
        }
        if let EventId::JsonPointer(pointer) = &self.event_id
            && !pointer.starts_with('/')
        {
            return Err(ConfigError::new(
                "webhook.event_id",
                format!("`{pointer}` is not a JSON pointer (it starts with `/`, as in `/id`)"),
            ));
        }
        let settings = Arc::new(Settings {
            terms: self.terms,
            max_response_bytes: 64 * 1024,
            keep: Keep::Successes,
            wait: None,
            renderer: self.renderer,
            layer: "webhook",
            store_failures: AtomicU64::new(0),
        });
        Ok(WebhookLayer {
            store: self.store,
            config: Arc::new(Config {
                scheme: self.scheme,
                secrets,
                event_id: self.event_id,
                scope: format!("webhook:{}", self.name),
                max_body_bytes: self.max_body_bytes,
                clock: self.clock,
                settings,
            }),
        })
    }
}
