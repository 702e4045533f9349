//! Idempotency keys: a retried `POST` runs once, and every retry gets the first answer.
//!
//! The behaviour follows Stripe's API and the IETF draft (`draft-ietf-httpapi-idempotency-key-header`):
//!
//! - Keys apply to `POST` and `PATCH` (configurable); on other methods the header is ignored.
//!   Per route a key is [required](IdempotencyBuilder::require) (400 without), optional (the
//!   default: without one the request passes and nothing is stored) or ignored.
//! - A key is 1 to 255 visible ASCII characters, bare (`abc`) or quoted (`"abc"`), the same key
//!   either way; anything else is 400 `idempotency_key_invalid`.
//! - Keys are scoped by caller (the [`Principal`](crate::Principal) an auth layer found, else
//!   the [`KeyExtractor`](crate::KeyExtractor)'s caller): the same key from two callers names
//!   two unrelated requests.
//! - A request is fingerprinted by method, path, query and a SHA-256 of its body (read up to
//!   [`max_request_bytes`](IdempotencyBuilder::max_request_bytes); above it 413). A key reused
//!   with a different fingerprint is 422 `idempotency_key_reused`.
//! - The first request takes an in-flight lock (an owner token and a lease) and runs the
//!   handler. Its response (status, end-to-end headers, body) is stored for the
//!   [retention](IdempotencyBuilder::retention) period (24 h) by a compare-and-set on the owner
//!   token; retries get it back with `Idempotent-Replayed: true`. Errors are replayed too
//!   (option [`release_on_5xx`](IdempotencyBuilder::release_on_5xx)).
//! - A duplicate arriving while the first runs gets 409 `idempotency_key_in_use` with
//!   `Retry-After`, or in [wait mode](IdempotencyBuilder::wait_for_in_flight) waits for the
//!   first and gets its replay.
//! - A request cancelled before its handler answered (the client hung up) releases its lock; a
//!   crashed one is taken over when its lease ends. The handler sees the key and which attempt
//!   it is in the [`IdempotencyKey`] request extension.
//! - Nothing is stored for a request an inner policy layer refused (its response carries a
//!   [`Rejection`](crate::Rejection)), or whose handler marks its response [`NotExecuted`].
//!   Layers outside this one (auth, rate limit) refuse before it sees the request at all.
//! - A response larger than [`max_response_bytes`](IdempotencyBuilder::max_response_bytes) is
//!   streamed to the client and not kept: retries get 409 `idempotency_response_not_kept`
//!   naming the original status. The handler never runs twice.
//! - Store down: 503 `idempotency_unavailable` with `Retry-After: 1` (fail closed: a double
//!   charge is worse than a retry).
//!
//! The request body is buffered and handed to the inner service as a new body of the same type
//! (`ReqBody: From<Bytes>`, as axum's `Body` and `http_body_util::Full` are).
//!
//! # Example
//! ```
//! use api_policy::backend::MemoryBackend;
//! use api_policy::idempotency::{IdempotencyLayer, MemoryIdempotencyStore};
//! use axum::{Router, body::Body, routing::post};
//! use http::{Request, StatusCode};
//! use std::sync::atomic::{AtomicU32, Ordering};
//! use std::sync::Arc;
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let runs = Arc::new(AtomicU32::new(0));
//! let counter = runs.clone();
//! let layer = IdempotencyLayer::builder(MemoryIdempotencyStore::new(&MemoryBackend::new()))
//!     .require("POST /orders")
//!     .build()?;
//! let app = Router::new()
//!     .route("/orders", post(move || async move {
//!         counter.fetch_add(1, Ordering::SeqCst);
//!         (StatusCode::CREATED, "order 1")
//!     }))
//!     .layer(layer);
//!
//! let order = || Request::post("/orders").header("idempotency-key", "k-1").body(Body::from("{}"));
//! let first = app.clone().oneshot(order()?).await?;
//! let retry = app.clone().oneshot(order()?).await?;
//! assert_eq!((first.status(), retry.status()), (StatusCode::CREATED, StatusCode::CREATED));
//! assert_eq!(retry.headers()["idempotent-replayed"], "true");
//! assert_eq!(runs.load(Ordering::SeqCst), 1);
//!
//! let unkeyed = app.oneshot(Request::post("/orders").body(Body::empty())?).await?;
//! assert_eq!(unkeyed.status(), StatusCode::BAD_REQUEST);
//! # Ok(())
//! # }
//! ```
//!
//! # Caveats
//! - The lease must outlast the slowest handler: a handler still running when its lease ends
//!   can be run again by a retry (the late completion is refused and logged).
//! - If the store fails after the handler ran, the outcome is not stored (logged as an error):
//!   a retry after the lease runs the handler again.
//! - The memory store forgets records when full (see [`MemoryIdempotencyStore`]); a fleet of
//!   instances needs the Redis store.

pub mod config;
pub(crate) mod fingerprint;
mod key;
mod layer;
#[cfg(feature = "memory")]
mod memory;
mod policy;
pub(crate) mod record;
#[cfg(feature = "redis")]
mod redis;
mod service;
pub(crate) mod store;
#[cfg(feature = "redis")]
mod wire;

pub use crate::once::{IDEMPOTENT_REPLAYED, IdempotencyKey, NotExecuted};
pub use crate::owner::OwnerToken;
pub use fingerprint::Fingerprint;
pub use key::{IDEMPOTENCY_KEY, KeyError, MAX_KEY_LEN, parse_key};
pub use layer::{IdempotencyBuilder, IdempotencyLayer};
#[cfg(feature = "memory")]
pub use memory::MemoryIdempotencyStore;
pub use policy::KeyRule;
pub use record::{Outcome, StoredResponse};
#[cfg(feature = "redis")]
pub use redis::RedisIdempotencyStore;
pub use service::{Idempotency, ResponseFuture};
pub use store::{Begin, IdempotencyStore, RecordKey, Terms};
