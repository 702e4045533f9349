//! # api-policy
//!
//! Composable [`tower`](https://docs.rs/tower) layers for the policies a production HTTP API needs,
//! for any axum, tonic or hyper service. Each layer keeps its state behind a small trait with two
//! backends: in-memory (one process) and Redis (a fleet of instances sharing one truth).
//!
//! | layer | module | state |
//! |---|---|---|
//! | Rate limiting (GCRA or sliding window; tiers, routes, costs, overrides) | [`rate_limit`] | [`rate_limit::RateLimitStore`] |
//! | JWT bearer auth (RFC 6750; static keys, JWKS, OIDC discovery; scopes, roles, revocation) | `auth` (feature `jwt`) | `auth::RevocationStore` |
//! | Idempotency keys (Stripe's semantics: replay, 409, 422, leases, wait mode) | [`idempotency`] | [`idempotency::IdempotencyStore`] |
//! | Webhook signatures (Stripe, HMAC headers) and once-per-event delivery | [`webhook`] | [`idempotency::IdempotencyStore`] |
//! | Conditional requests (ETags, 304, preconditions decided before the handler, 428) | [`conditional`] | [`conditional::ValidatorStore`] |
//! | Versioning and deprecation (path, header, vendor type, pins; RFC 9745/8594 headers; sunsets, brownouts, usage report) | [`versioning`] | [`versioning::VersionPinStore`] |
//! | PHI audit (one hash-chained record per request, fail-closed or buffered) | [`audit`] | [`audit::AuditSink`] |
//!
//! ## Layer order
//! Outer to inner: audit -> JWT auth -> rate limit -> versioning -> idempotency -> conditional
//! requests -> handler. Auth runs before the limiter so the limiter counts principals and refused
//! credentials spend no quota.
//!
//! ## Feature flags
//! | feature | default | what it adds |
//! |---|---|---|
//! | `memory` | yes | [`backend::MemoryBackend`] and the in-memory stores |
//! | `redis` | no | [`backend::RedisBackend`] and the Redis stores |
//! | `cluster` | no | `RedisBackend::cluster`: the same stores on a Redis Cluster (implies `redis`) |
//! | `axum` | no | reads axum's `ConnectInfo` as the peer address; `Principal`, `Option<Principal>`, `Claims<T>` and `Access` as axum extractors |
//! | `jwt` | no | `auth`: the JWT layer with static keys (pulls `jsonwebtoken` with `aws-lc-rs`) |
//! | `jwks` | no | `auth::Jwks`: keys from JWKS URLs and OIDC discovery (pulls `reqwest` with rustls) |
//! | `audit-signing` | no | signed checkpoints of the audit log: `audit::SigningKey`, `audit::PublicKey`, `audit::Checkpoints` (pulls `aws-lc-rs`) |
//! | `metrics` | no | decision counters and store latencies through the `metrics` facade ([`metrics`]) |
//! | `full` | no | all of the above |
//!
//! ## Shared pieces
//! - [`principal`]: who is calling ([`Principal`], [`KeyExtractor`], trusted proxies).
//! - [`route`]: route patterns with templates, shared by every per-route rule.
//! - [`rejection`]: a policy's refusal as problem+json, or as a trailers-only gRPC answer.
//! - [`body::PolicyBody`]: the response body type of every layer.
//! - [`clock`]: system and manual clocks.
//!
//! ## Quick start
//! [`stack::PolicyStack`] composes the layers in this order, each optional, and
//! [`stack::StackConfig`] builds the whole stack from a configuration file (each layer's section
//! is its module's `config`). Every layer's module has a runnable example; `examples/server/`
//! is a whole API run from `examples/server.toml`.
#![forbid(unsafe_code)]
#![deny(unreachable_pub)]
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod audit;
#[cfg(feature = "jwt")]
pub mod auth;
pub mod backend;
pub mod body;
mod buffer;
pub mod clock;
pub mod conditional;
mod config_map;
mod error;
mod header_value;
pub mod idempotency;
mod kit;
pub mod metrics;
pub(crate) mod once;
mod owner;
pub mod principal;
pub mod rate_limit;
pub mod rejection;
pub mod route;
pub mod stack;
pub mod versioning;
pub mod webhook;

pub use error::{ConfigError, FailurePolicy, StoreError};
pub use owner::OwnerToken;
pub use principal::{KeyExtractor, Principal};
pub use rejection::Rejection;
