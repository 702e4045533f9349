//! Conditional requests (RFC 9110 section 13): ETags, 304 revalidation, and lost-update
//! protection decided before the handler runs, across a fleet.
//!
//! A [`ConditionalLayer`]:
//!
//! - gives `GET`/`HEAD` answers `200` a strong `ETag` digested from the body (buffered up to
//!   [`max_body_bytes`](ConditionalBuilder::max_body_bytes); larger bodies stream through
//!   without one). A handler's own `ETag` and `Last-Modified` are respected, never replaced;
//! - answers `If-None-Match` / `If-Modified-Since` with `304`: no body, and only `ETag`,
//!   `Cache-Control`, `Content-Location`, `Date`, `Expires` and `Vary` of the 200;
//! - on [resource](ConditionalBuilder::resource) routes: sets a default `Cache-Control`,
//!   learns each resource's validators from its responses (a [`ValidatorStore`]: memory or
//!   Redis) or asks the application ([`lookup`](ConditionalBuilder::lookup), e.g. a version
//!   column), and decides `If-Match`, `If-Unmodified-Since` and `If-None-Match` on `PUT`,
//!   `PATCH`, `DELETE` and `POST` *before* the handler: a `412` never calls it. Each update holds
//!   the resource's write lock from the check to its new validators (the `ETag`/`Last-Modified`
//!   the handler's answer states; an answer that states none makes the layer forget them), so
//!   two updates carrying the same `If-Match` cannot both succeed, even on two instances sharing
//!   Redis, as long as each finishes within the lock's lease (30 s by default:
//!   [`lock`](ConditionalBuilder::lock)). An update that finds the lock held waits for it
//!   (on memory, it starts the moment the lock ends; on Redis, it asks again, every 2 ms at
//!   first, backing off to every 100 ms), unless the validators of now (the store's, or the
//!   lookup's, asked once) already fail its preconditions (a stale `If-Match`): that one is
//!   `412` at once, as if it had come just before the update under way (or, when the lookup
//!   sees its change, just after);
//! - with [`require_preconditions`](ResourceRule::require_preconditions), answers an update
//!   without `If-Match`/`If-Unmodified-Since` with `428`.
//!
//! The evaluation itself is [`evaluate`], RFC 9110 section 13.2.2 as one pure function.
//!
//! Malformed `If-Match`/`If-None-Match` lists are `400 precondition_malformed`; invalid or
//! repeated dates are ignored, as RFC 9110 requires.
//!
//! # Validators the layer does not know
//! Learned validators come from the answers the layer sees. Until a resource has been read (or
//! after its validators expire, default 1 hour), the layer does not know its ETag: an update
//! with `If-Match` then fails safe with `412` (the client reads the resource, which teaches the
//! layer, and retries), and `If-None-Match: *` is left to the handler. An answer learned from a
//! read that began before an update ended is not kept (each resource has a generation that
//! updates raise), so a slow read cannot bring back an ETag an update replaced. Resources are
//! keyed by their route template filled in with the decoded path parameters, so `apt%5F1` and
//! `apt_1` are one resource. A
//! [`lookup`](ConditionalBuilder::lookup) removes both: the application always knows. Changes
//! made outside the layer are not seen by learned validators; use the lookup if there are any.
//!
//! # Example
//! ```
//! use api_policy::backend::MemoryBackend;
//! use api_policy::conditional::{ConditionalLayer, MemoryValidatorStore, ResourceRule};
//! use axum::{Router, body::Body, routing::get};
//! use http::{Request, StatusCode};
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let layer = ConditionalLayer::builder(MemoryValidatorStore::new(&MemoryBackend::new()))
//!     .resource("/notes/{id}", ResourceRule::resource().cache_control("private, max-age=60"))
//!     .build()?;
//! let app = Router::new()
//!     .route("/notes/{id}", get(|| async { r#"{"text":"hello"}"# }))
//!     .layer(layer);
//!
//! let first = app.clone().oneshot(Request::get("/notes/1").body(Body::empty())?).await?;
//! let etag = first.headers()["etag"].clone();
//! let again = Request::get("/notes/1").header("if-none-match", etag).body(Body::empty())?;
//! assert_eq!(app.oneshot(again).await?.status(), StatusCode::NOT_MODIFIED);
//! # Ok(())
//! # }
//! ```

pub mod config;
mod digest;
mod etag;
mod layer;
mod lock_guard;
#[cfg(feature = "memory")]
mod memory;
mod plan;
mod policy;
mod precondition;
mod read;
#[cfg(feature = "redis")]
mod redis;
mod rejections;
mod service;
mod store;
mod update;
mod validators;

pub use crate::owner::OwnerToken;
pub use etag::{EntityTag, EtagError, TagList};
pub use layer::{ConditionalBuilder, ConditionalLayer, ResourceRule};
#[cfg(feature = "memory")]
pub use memory::MemoryValidatorStore;
pub use policy::{Current, Resource};
pub use precondition::{Evaluation, Preconditions, Validators, evaluate};
#[cfg(feature = "redis")]
pub use redis::RedisValidatorStore;
pub use service::{Conditional, ResponseFuture};
pub use store::{Locked, Snapshot, StoredValidators, Update, ValidatorStore};
pub(crate) use validators::ANSWER_FIELDS;
