//! Rate limiting per caller, per tier and per route, on one process or a fleet sharing Redis.
//!
//! [`RateLimitLayer`] finds the caller ([`KeyExtractor`](crate::principal::KeyExtractor)), picks a
//! quota (the caller's tier, a route's own limit, or the caller's negotiated override) and asks a
//! [`RateLimitStore`] for one atomic decision. Allowed responses carry `X-RateLimit-Limit`,
//! `-Remaining`, `-Used` and `-Reset` (UTC epoch seconds at which the bucket is full again) and,
//! when enabled, the IETF draft's `RateLimit-Policy` and `RateLimit` fields. A refused request gets
//! 429 with `Retry-After` (whole seconds, rounded up) and a problem body with
//! `error: rate_limit_exceeded`; gRPC callers get `RESOURCE_EXHAUSTED`.
//!
//! # Algorithms
//! GCRA (the default) keeps one timestamp per bucket and spaces requests at `period / count`, with
//! `burst` allowed at once. A sliding-window counter weights the previous window by its overlap.
//! Both refuse the "double burst" a fixed window lets through at a window boundary.
//!
//! On a refused request, `X-RateLimit-Reset` and the `t` of `RateLimit` say when that request could
//! pass, the same moment as `Retry-After`; on an allowed one, when the bucket is full again. A
//! request that costs more than the whole capacity can never pass: 429 without `Retry-After`.
//!
//! # Example
//! ```
//! use api_policy::backend::MemoryBackend;
//! use api_policy::principal::{KeyExtractor, Principal};
//! use api_policy::rate_limit::{MemoryRateLimitStore, Quota, RateLimitLayer, RouteRule};
//! use http::{Request, Response};
//! use std::collections::HashMap;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let keys = HashMap::from([("key_pro".to_string(), Principal::service("acme").with_tier("pro"))]);
//! let limits = RateLimitLayer::builder(MemoryRateLimitStore::new(&MemoryBackend::new()))
//!     .tier("free", Quota::per_hour(60))
//!     .tier("pro", Quota::per_hour(5_000))
//!     .route("POST /bookings", RouteRule::limit(Quota::per_minute(2)).named("booking"))
//!     .route("/health", RouteRule::exempt())
//!     .key_extractor(KeyExtractor::new().api_key_header("x-api-key", keys)?)
//!     .build()?;
//! let service = ServiceBuilder::new()
//!     .layer(limits)
//!     .service(service_fn(|_req: Request<String>| async { Ok::<_, std::convert::Infallible>(Response::new(String::new())) }));
//!
//! let request = || Request::post("/bookings").header("x-api-key", "key_pro").body(String::new()).unwrap();
//! for remaining in ["1", "0"] {
//!     let response = service.clone().oneshot(request()).await.unwrap();
//!     assert_eq!(response.status(), 200);
//!     assert_eq!(response.headers()["x-ratelimit-remaining"], remaining);
//! }
//! let response = service.clone().oneshot(request()).await.unwrap();
//! assert_eq!(response.status(), 429);
//! assert_eq!(response.headers()["retry-after"], "30");
//! # Ok::<(), api_policy::ConfigError>(())
//! # }).unwrap();
//! ```
//!
//! # Security: who is counted
//! Callers are counted by principal or API key. IP addresses are used only when
//! [`KeyExtractor::client_ip`](crate::principal::KeyExtractor::client_ip) is configured, and
//! `X-Forwarded-For` only from proxies named there. A caller nobody can identify gets
//! [`Unidentified::reject`] (401) unless you choose a shared anonymous bucket.
//!
//! # Failure
//! A store that cannot answer fails open by default (the request passes without headers, a warning
//! is traced and [`RateLimitLayer::store_failures`] counts it); [`FailurePolicy::Closed`] answers 503.

pub mod config;
mod headers;
mod layer;
#[cfg(feature = "memory")]
mod memory;
mod policy;
mod quota;
#[cfg(feature = "redis")]
mod redis;
mod service;
mod store;
#[cfg_attr(not(any(feature = "memory", feature = "redis")), allow(dead_code))]
mod verdict;

pub use crate::error::FailurePolicy;
pub(crate) use headers::ANSWER_FIELDS;
pub use layer::{RateLimitBuilder, RateLimitLayer, RouteRule};
#[cfg(feature = "memory")]
pub use memory::MemoryRateLimitStore;
pub use policy::Unidentified;
pub use quota::{Algorithm, Quota};
#[cfg(feature = "redis")]
pub use redis::RedisRateLimitStore;
pub use service::{RateLimit, ResponseFuture};
pub use store::{BucketKey, Decision, RateLimitStore};
