//! The app: the routes, behind the configured policies, and the conditional-request layer that
//! looks the appointments' current ETags up.

use std::net::SocketAddr;

use api_policy::conditional::config::ConditionalConfig;
use api_policy::conditional::{
    ConditionalLayer, Current, EntityTag, StoredValidators, ValidatorStore,
};
use api_policy::principal::PeerAddr;
use api_policy::stack::{ConfiguredStack, StackBackend, StackBody};
use api_policy::webhook::WebhookLayer;
use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::http::header;
use axum::response::Response;
use axum::routing::{get, post};
use metrics_exporter_prometheus::PrometheusHandle;
use tower::ServiceBuilder;

use crate::data::AppState;
use crate::handlers::admin::deprecations;
use crate::handlers::appointments::{get_appointment_v1, get_appointment_v2, update_appointment};
use crate::handlers::booking::book_appointment;
use crate::handlers::patients::get_patient;
use crate::handlers::webhook::stripe_webhook;
use crate::handlers::{health, method_not_allowed, migration_guide, no_route};

/// Conditional requests on appointments, as configured (a strong ETag on every `GET`,
/// `If-Match` required on `PUT`), with the appointments' own validators: the layer looks the
/// current ETag up in them (the same digest the `GET` answer gets) rather than learning it from
/// answers, so an update made any other way is never hidden behind a stale ETag.
pub fn conditional<V: ValidatorStore>(
    config: &ConditionalConfig,
    store: V,
    state: &AppState,
) -> Result<ConditionalLayer<V>, api_policy::ConfigError> {
    let state = state.clone();
    config
        .builder(store)?
        .lookup(move |resource| {
            let current = current_appointment(&state, resource.param("id").unwrap_or_default());
            async move { Ok(current) }
        })
        .build()
}

/// The appointment's v2 representation's validators, as the `GET` handler's answer gets them.
fn current_appointment(state: &AppState, id: &str) -> Current {
    let db = state.db();
    let Some(appointment) = db.appointments.get(id) else {
        return Current::Missing;
    };
    match serde_json::to_vec(&appointment.v2(&db.providers)) {
        Ok(json) => Current::Exists(StoredValidators {
            etag: Some(EntityTag::digest(&json)),
            last_modified: None,
        }),
        // Serialising plain strings cannot fail; if it did, no ETag can match.
        Err(_) => Current::Exists(StoredValidators::default()),
    }
}

/// Copies axum's `ConnectInfo` into the crate's [`PeerAddr`], so anonymous callers are keyed by IP
/// without the crate's `axum` feature.
fn with_peer_addr(mut request: Request) -> Request {
    if let Some(ConnectInfo(addr)) = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .copied()
    {
        request.extensions_mut().insert(PeerAddr(addr));
    }
    request
}

/// The routes behind the policies; the Stripe webhook checks signatures with
/// `stripe_webhook_secret` and de-duplicates events in `events`. Serve with
/// `into_make_service_with_connect_info::<SocketAddr>()` so anonymous callers have an address.
pub fn app<B: StackBackend>(
    state: AppState,
    policies: ConfiguredStack<B>,
    events: B::Idempotency,
    metrics: PrometheusHandle,
    stripe_webhook_secret: &str,
) -> Result<Router, api_policy::ConfigError> {
    let webhook = WebhookLayer::stripe(events, stripe_webhook_secret).build()?;
    Ok(Router::new()
        .route("/health", get(health))
        .route("/api/v1/appointments/{id}", get(get_appointment_v1))
        .route("/api/v2/appointments", post(book_appointment))
        .route(
            "/api/v2/appointments/{id}",
            get(get_appointment_v2).put(update_appointment),
        )
        .route("/api/v2/patients/{id}", get(get_patient))
        .route("/webhooks/stripe", post(stripe_webhook).layer(webhook))
        .route("/admin/deprecations", get(deprecations))
        .route(
            "/metrics",
            get(move || {
                let text = metrics.render();
                async move { ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text) }
            }),
        )
        .route("/docs/migrate-to-v2", get(migration_guide))
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        .layer(
            // `PolicyStack` orders the layers (audit, auth, rate limit, versioning, idempotency,
            // conditional requests); each wraps the body it gets in a `PolicyBody`, hence
            // `StackBody` unwrapped here.
            ServiceBuilder::new()
                .map_request(with_peer_addr)
                .map_response(|response: Response<StackBody<Body>>| response.map(Body::new))
                .layer(policies),
        ))
}
