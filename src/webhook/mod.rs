//! Webhooks: signatures verified over the raw body, each event handled once.
//!
//! A [`WebhookLayer`] goes on the webhook route. For every delivery it:
//!
//! 1. reads the raw body (up to a limit: 413 above it), since the signature covers the exact
//!    bytes, and hands the same bytes on to the handler;
//! 2. checks the signature: Stripe's `Stripe-Signature` (HMAC-SHA256 over `"{t}.{body}"`, any
//!    `v1` matching any configured secret, 300 s tolerance) or one HMAC header for other
//!    providers ([`HmacHeader`]: GitHub, Shopify, your own). A missing, malformed, stale or wrong
//!    signature is 400 with a problem body naming the reason; the handler is not run;
//! 3. runs each event once, keyed by its id through the same
//!    [`IdempotencyStore`](crate::idempotency::IdempotencyStore) as idempotency keys: a repeated
//!    delivery of a handled event gets the first answer (200) with `Idempotent-Replayed: true`,
//!    and the handler does not run again. Only 2xx answers are kept: after any other the sender
//!    retries, and the retry runs the handler. The handler sees the event id and attempt in the
//!    [`IdempotencyKey`](crate::idempotency::IdempotencyKey) extension.
//!
//! # Example
//! ```
//! use api_policy::backend::MemoryBackend;
//! use api_policy::idempotency::MemoryIdempotencyStore;
//! use api_policy::webhook::{WebhookLayer, WebhookSecret, sign_stripe};
//! use axum::{Router, body::Body, routing::post};
//! use http::{Request, StatusCode};
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = MemoryIdempotencyStore::new(&MemoryBackend::new());
//! let app = Router::new()
//!     .route("/webhooks/stripe", post(|| async { "ok" }))
//!     .layer(WebhookLayer::stripe(store, "whsec_test_secret").build()?);
//!
//! let payload = r#"{"id":"evt_1","type":"payment_intent.succeeded"}"#;
//! let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
//! let signature = sign_stripe(payload.as_bytes(), &WebhookSecret::new("whsec_test_secret")?, now);
//! let delivery = |signature: &str| {
//!     Request::post("/webhooks/stripe")
//!         .header("stripe-signature", signature)
//!         .body(Body::from(payload))
//! };
//! assert_eq!(app.clone().oneshot(delivery(&signature)?).await?.status(), StatusCode::OK);
//! let again = app.clone().oneshot(delivery(&signature)?).await?;
//! assert_eq!(again.headers()["idempotent-replayed"], "true");
//! let forged = app.oneshot(delivery("t=1,v1=00")?).await?;
//! assert_eq!(forged.status(), StatusCode::BAD_REQUEST);
//! # Ok(())
//! # }
//! ```
//!
//! # Security notes
//! - Mount the layer on the webhook route only, and put nothing that reads or re-encodes the body
//!   (a JSON parser, a decompressor) in front of it: the signature is over the exact bytes sent.
//! - The HMAC-header schemes sign no timestamp, so only event de-duplication stands between them
//!   and a replayed delivery; configure [`EventId`] for them.
//! - Every signature comparison is constant-time.

mod layer;
mod policy;
mod service;
mod signature;

pub use layer::{WebhookBuilder, WebhookLayer};
pub use policy::EventId;
pub use service::{ResponseFuture, STRIPE_SIGNATURE, Webhook};
pub use signature::*;
