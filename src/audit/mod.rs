//! PHI audit: one tamper-evident record per access to a PHI route, durable before the data
//! leaves, verifiable offline.
//!
//! An [`AuditLayer`], placed outermost, writes exactly one [`AuditRecord`] for every request to
//! a PHI route (chosen with [route patterns](crate::route)), whatever answers it: the handler,
//! or an inner layer's refusal (401, 403, 404, 429; the refusing policy's `error` code is
//! recorded from the answer's [`Rejection`](crate::Rejection)). The record holds the time, the
//! request id, the actor (the [`Principal`](crate::Principal) an inner auth layer copied to the
//! answer) and session, the action (method and route template), the resource (its query values
//! redacted unless allowed by name), the patient or record id from a named path parameter, the
//! status, the client IP (trusted-proxy aware), the user agent and the latency. Never a body,
//! never the `Authorization` value.
//!
//! [`Durability::FailClosed`] (the default) releases an answer only once its record is durable;
//! a sink that reports itself unhealthy makes PHI routes answer 503 without running the
//! handler, and a failed write replaces the answer with 503. [`Durability::Buffered`] queues
//! records for a background writer (bounded, back-pressure, or counted drops).
//!
//! Sinks ([`AuditSink`], one trait impl for your own): [`FileSink`] (JSON lines on a SHA-256
//! hash chain, group commit, rotation, recovery of a torn tail), [`RedisStreamSink`] (feature
//! `redis`; the same chain in a stream, shared by every instance), [`TracingSink`]. The layer
//! formats each record once, from what the request and its answer hold, and hands its sink
//! batches of canonical bytes ([`RecordBatch`], [`AuditSink::write_batch`]); a sink that
//! implements only [`write`](AuditSink::write) gets each record read back as an
//! [`AuditRecord`]. The chain
//! and its verifier are in [`chain`]; [`LogVerifier`] checks a file sink's whole log (every
//! file, the head file, the checkpoints) and `cargo run --example audit_verify -- PATH` runs it.
//!
//! With the feature `audit-signing`, the file sink seals its chain with signed
//! [`checkpoint`]s ([`Checkpoints`], [`SigningKey`]), which a verifier given the
//! [`PublicKey`]s checks: a forger who rewrites the log and recomputes its hashes cannot sign
//! for the new chain.
//!
//! Answers of PHI routes that state no `Cache-Control` get `no-store` (or the route's
//! configured value, [`AuditBuilder::cache_control`], [`AuditBuilder::route_cache_control`]):
//! no shared cache keeps patient data.
//!
//! # Example
//! ```
//! use api_policy::audit::{AuditLayer, FileSink};
//! use axum::{Router, body::Body, routing::get};
//! use http::Request;
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = std::env::temp_dir().join(format!("audit-doc-{}", std::process::id()));
//! let log = dir.join("phi.log");
//! let audit = AuditLayer::builder(FileSink::builder(&log).open()?)
//!     .phi_route_with_subject("/patients/{id}", "id")
//!     .build()?;
//! let app = Router::new()
//!     .route("/patients/{id}", get(|| async { "{}" }))
//!     .layer(audit);
//!
//! app.oneshot(Request::get("/patients/pat_1?name=Ada").body(Body::empty())?).await?;
//! let files = FileSink::files(&log)?;
//! let verified = api_policy::audit::chain::verify(&files, FileSink::head(&log))?;
//! assert_eq!(verified.records, 1);
//! assert!(std::fs::read_to_string(&log)?.contains("name=REDACTED"));
//! # std::fs::remove_dir_all(dir)?;
//! # Ok(())
//! # }
//! ```
//!
//! # HIPAA notes
//! The layer covers the audit-control safeguard (45 CFR 164.312(b)) for the requests it sees:
//! who accessed which patient's data, when, from where, and with what outcome, on a log whose
//! alteration is detectable (164.312(c)(1)). It does not cover access outside HTTP (database
//! consoles, batch jobs), the retention of the logs (six years under 164.316(b)(2); archive
//! rotated files), or their review. Against someone who can rewrite the whole chain, a hash chain
//! without a key proves nothing past the head file they can rewrite too: seal it with signed
//! checkpoints (feature `audit-signing`) and copy them to a second system (the Redis stream, a
//! SIEM) with [`Checkpoints::copy_to`](crate::audit::Checkpoints), so that checkpoints
//! published before an intrusion still bind. Records contain patient identifiers: the log
//! itself is PHI, to be stored and transmitted as such.

mod batch;
pub mod chain;
pub mod checkpoint;
pub mod config;
mod draft;
pub mod head;
mod layer;
mod policy;
mod queue;
mod record;
mod service;
#[cfg(feature = "audit-signing")]
mod signing;
pub mod sink;
mod verify;

pub use batch::RecordBatch;
pub use checkpoint::CheckpointFault;
pub use layer::{AuditBuilder, AuditLayer, AuditStats, Durability};
pub use record::AuditRecord;
pub(crate) use service::ANSWER_FIELDS;
pub use service::{Audit, ResponseFuture};
#[cfg(feature = "audit-signing")]
pub use signing::{KeyError, PublicKey, SigningKey};
#[cfg(feature = "audit-signing")]
pub use sink::Checkpoints;
#[cfg(feature = "redis")]
pub use sink::RedisStreamSink;
pub use sink::{AuditSink, FileSink, SinkError, TracingSink};
pub use verify::{HeadFault, LogReport, LogVerifier, VerifyError};
