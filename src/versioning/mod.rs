//! API versions: resolution, deprecation and sunset headers (RFC 9745, RFC 8594), enforcement,
//! brownouts, pins and a report of who still calls deprecated versions.
//!
//! A [`VersioningLayer`] resolves each request's [`ApiVersion`]:
//!
//! 1. An explicit version, by the strategies in the order added: a version header
//!    ([`header`](VersioningBuilder::header), numbers or dates: `Api-Version: 2024-04-10`) and a
//!    vendor media type ([`accept_vendor`](VersioningBuilder::accept_vendor):
//!    `Accept: application/vnd.NAME.v2+json`). First match wins.
//! 2. A `v{N}` path segment ([`path_prefix`](VersioningBuilder::path_prefix)): it decides when
//!    nothing explicit was sent, and an explicit version must be of the same major (a dated
//!    [`revision_of`](VersioningBuilder::revision_of) it), else 400 `version_conflict`.
//! 3. The caller's pin ([`pins`](VersioningBuilder::pins), optionally pinned on first use, as
//!    Stripe pins an account), then the default.
//!
//! Malformed: 400 `version_malformed`. Unknown: 410 `version_unknown`; retired: 410
//! `version_retired`, both with the migration link. The version goes into the request
//! extensions (an axum extractor with the `axum` feature), with its [`VersionSource`], and is
//! echoed in the `Api-Version` response header; `Vary` names the header and `Accept` when those
//! strategies are on.
//!
//! A [`Deprecation`] (per version, or per route with
//! [`deprecate_route`](VersioningBuilder::deprecate_route)) adds `Deprecation: @<epoch>`,
//! `Sunset: <IMF-fixdate>` and `Link: <...>; rel="deprecation"` / `rel="sunset"` to every
//! answer and changes nothing else; a sunset before the deprecation fails the build. After an
//! [enforced](Deprecation::enforce_sunset) sunset the version answers 410 `version_sunset`, and
//! during a scheduled [brownout](Deprecation::brownout) 410 `version_brownout` with
//! `Retry-After`. Every call to a deprecated version is a `tracing` event (target
//! `api_policy::deprecation`) and a count per caller and day in the [`VersionPinStore`]:
//! [`VersioningLayer::usage`] lists who called it in the last N days, so a team knows whom to
//! contact before the sunset.
//!
//! # Example
//! ```
//! use std::time::{Duration, UNIX_EPOCH};
//! use api_policy::backend::MemoryBackend;
//! use api_policy::versioning::{ApiVersion, Deprecation, MemoryVersionPinStore, VersionStatus, VersioningLayer};
//! use axum::{Router, body::Body, routing::get};
//! use http::Request;
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let v1 = Deprecation::since(UNIX_EPOCH + Duration::from_secs(1_782_864_000))
//!     .sunset(httpdate::parse_http_date("Thu, 31 Dec 2026 23:59:59 GMT")?)
//!     .link("https://docs.example.com/migrate-to-v2");
//! let layer = VersioningLayer::builder(MemoryVersionPinStore::new(&MemoryBackend::new()), ApiVersion::Major(2))
//!     .version(ApiVersion::Major(1), VersionStatus::Deprecated(v1))
//!     .version(ApiVersion::Major(2), VersionStatus::Current)
//!     .path_prefix()
//!     .header("Api-Version")
//!     .build()?;
//! let app = Router::new().route("/v1/notes", get(|| async { "[]" })).layer(layer);
//!
//! let response = app.oneshot(Request::get("/v1/notes").body(Body::empty())?).await?;
//! assert_eq!(response.headers()["deprecation"], "@1782864000");
//! assert_eq!(response.headers()["sunset"], "Thu, 31 Dec 2026 23:59:59 GMT");
//! # Ok(())
//! # }
//! ```

pub mod config;
mod deprecation;
mod layer;
#[cfg(feature = "memory")]
mod memory;
mod policy;
#[cfg(feature = "redis")]
mod redis;
mod resolve;
mod service;
mod store;
mod version;

pub use deprecation::Deprecation;
pub use layer::{VersioningBuilder, VersioningLayer};
#[cfg(feature = "memory")]
pub use memory::MemoryVersionPinStore;
pub use policy::VersionStatus;
#[cfg(feature = "redis")]
pub use redis::RedisVersionPinStore;
pub use resolve::Source;
pub(crate) use service::ANSWER_FIELDS;
pub use service::{ResponseFuture, VersionSource, Versioning};
pub use store::{Usage, VersionPinStore};
pub use version::{ApiVersion, VersionError};

#[cfg(feature = "axum")]
mod extract {
    use axum::extract::{FromRequestParts, OptionalFromRequestParts};
    use axum::response::{IntoResponse, Response};
    use http::StatusCode;
    use http::request::Parts;

    use super::ApiVersion;
    use crate::rejection::{ProblemRenderer, Rejection, RejectionContext, RenderRejection};

    /// The resolved version; a 500 problem when no versioning layer ran (a wiring mistake).
    impl<S: Send + Sync> FromRequestParts<S> for ApiVersion {
        type Rejection = Response;

        async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Response> {
            if let Some(version) = parts.extensions.get::<ApiVersion>() {
                return Ok(*version);
            }
            let rejection = Rejection::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "versioning_not_configured",
                "This route reads the API version, but no versioning layer resolved one.",
            );
            let request = http::Request::from_parts(parts.clone(), ());
            let response =
                ProblemRenderer::new().render(&rejection, &RejectionContext::of(&request));
            Err(response.map(axum::body::Body::from).into_response())
        }
    }

    impl<S: Send + Sync> OptionalFromRequestParts<S> for ApiVersion {
        type Rejection = std::convert::Infallible;

        async fn from_request_parts(
            parts: &mut Parts,
            _state: &S,
        ) -> Result<Option<Self>, Self::Rejection> {
            Ok(parts.extensions.get::<ApiVersion>().copied())
        }
    }
}
