//! The whole stack: [`PolicyStack`] composes the policy layers in the recommended order, and
//! [`StackConfig`] builds it from a configuration file.
//!
//! Outer to inner: audit, JWT auth, rate limit, versioning, idempotency, conditional requests,
//! then your service. Every slot is optional; an empty one passes requests through, so the
//! response body is always [`StackBody`] of the service's body.
//!
//! # From a configuration file
//! Each layer's section is its module's `config` type ([`RateLimitConfig`](crate::rate_limit::config::RateLimitConfig),
//! ...). Parse the file with the serde format you like, pick the backend, build:
//!
//! ```
//! use api_policy::stack::{BackendKind, StackConfig};
//! let text = r#"{
//!     "callers": { "client_ip": true },
//!     "rate_limit": { "tiers": { "anonymous": "20/min" }, "ietf_headers": true },
//!     "idempotency": { "require": ["POST /orders"] }
//! }"#;
//! let config: StackConfig = serde_json::from_str(text)?;
//! assert_eq!(config.backend.kind, BackendKind::Memory);
//! // The backend the `[backend]` section names (memory unless it says `redis`).
//! let stack = config.build(&config.backend.build()?)?;
//! assert!(stack.idempotency_layer().get().is_some());
//! # Ok::<_, Box<dyn std::error::Error>>(())
//! ```
//!
//! A layer that needs code as well as settings (a conditional lookup, a custom renderer) is
//! built from its section's `builder` and put in its slot with the stack's setter, replacing
//! what the configuration built.

mod backend;
mod compose;
mod config;
#[cfg(any(feature = "memory", feature = "redis"))]
mod dispatch;
mod room;

pub use backend::StackBackend;
pub use compose::{
    Maybe, MaybeFuture, MaybeService, PolicyStack, Rendering, Skip, Skipped, SkippedFuture,
    StackBody,
};
pub use config::{
    ApiKeyConfig, AuthSlot, BackendConfig, BackendKind, CallersConfig, ConfiguredStack, StackConfig,
};
#[cfg(any(feature = "memory", feature = "redis"))]
pub use dispatch::{
    AnyBackend, AnyIdempotencyStore, AnyRateLimitStore, AnyValidatorStore, AnyVersionPinStore,
};
pub use room::{HeaderRoom, HeaderRoomFuture};
