//! JWT bearer authentication (RFC 6750, RFC 8725, RFC 9068) and route-level authorization.
//!
//! [`JwtAuthLayer`] reads a bearer token from the `Authorization` header (or, optionally, a
//! cookie; never the query string), verifies it with keys bound to one algorithm each, checks
//! `iss`, `aud`, `exp`, `nbf` (leeway 0 by default), optionally `typ` and a maximum lifetime, and
//! consults a `jti` deny list. The caller becomes a [`Principal`](crate::Principal) in the request
//! extensions (and the response's), beside the typed [`Claims<T>`]; the rate limiter, the audit
//! log and handlers read it from there.
//!
//! | request | answer |
//! |---|---|
//! | no bearer credentials | 401, `WWW-Authenticate: Bearer realm="api"` |
//! | malformed `Authorization` | 400, `error="invalid_request"` |
//! | bad signature, expired, not yet valid, wrong `iss`/`aud`/`typ`, `alg` not allowed, revoked | 401, `error="invalid_token"` |
//! | valid, but without the route's scope or role | 403, `error="insufficient_scope"`, `scope="..."` |
//! | no keys could ever be fetched; revocation store down | 503 `auth_unavailable`, `Retry-After` |
//!
//! Bodies are problem+json, or a trailers-only gRPC answer (UNAUTHENTICATED, PERMISSION_DENIED,
//! INVALID_ARGUMENT, UNAVAILABLE) for gRPC callers; [`JwtAuthBuilder::renderer`] replaces both.
//!
//! ```
//! use api_policy::auth::{Algorithm, JwtAuthLayer, Require, VerifyKey};
//! use http::{Request, Response, StatusCode};
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let secret = b"a-development-secret-of-32-bytes";
//! let auth = JwtAuthLayer::builder()
//!     .key(VerifyKey::hmac(Algorithm::HS256, secret)?)
//!     .issuer(["https://issuer.example"])
//!     .audience(["my-api"])
//!     .route("GET /admin/*", Require::any_role(["admin"]))
//!     .build()?;
//! let app = ServiceBuilder::new()
//!     .layer(auth)
//!     .service_fn(|_req: Request<()>| async { Ok::<_, std::convert::Infallible>(Response::new(())) });
//!
//! let anonymous = app.clone().oneshot(Request::new(())).await?;
//! assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
//! assert_eq!(anonymous.headers()["www-authenticate"], "Bearer realm=\"api\"");
//!
//! let claims = serde_json::json!({
//!     "iss": "https://issuer.example", "aud": "my-api", "sub": "user_1",
//!     "exp": 4102444800u64, "role": "patient",
//! });
//! let token = jsonwebtoken::encode(
//!     &jsonwebtoken::Header::new(Algorithm::HS256),
//!     &claims,
//!     &jsonwebtoken::EncodingKey::from_secret(secret),
//! )?;
//! let bearer = |path: &str| {
//!     Request::get(path).header("authorization", format!("Bearer {token}")).body(()).unwrap()
//! };
//! assert_eq!(app.clone().oneshot(bearer("/me")).await?.status(), StatusCode::OK);
//! assert_eq!(app.oneshot(bearer("/admin/users")).await?.status(), StatusCode::FORBIDDEN);
//! # Ok(()) }
//! ```
//!
//! # Keys
//! - Static: [`VerifyKey::hmac`], [`VerifyKey::rsa_pem`], [`VerifyKey::ec_pem`],
//!   [`VerifyKey::ed_pem`], [`VerifyKey::from_jwk`].
//! - Published (feature `jwks`): `Jwks::from_url` or `Jwks::discover` (OIDC). The cache honours
//!   `Cache-Control: max-age`, refreshes in the background, refetches once (de-duplicated, with
//!   a cooldown) for an unknown `kid`, and keeps its keys when a fetch fails.
//!
//! # Security: key confusion and algorithm choice
//! Every key verifies exactly one algorithm, fixed when the key is configured (or by the JWK's
//! `alg` and curve), and the token's `alg` must be in the allowlist and match the key. An `HS256`
//! token "signed" with an RSA public key's PEM as the HMAC secret therefore meets no HMAC key and
//! is refused; `alg: none` is never accepted; `jku`, `x5u` and embedded `jwk` headers are never
//! used to find keys. Symmetric keys are never taken from a published JWKS, and JWKS URLs must be
//! `https` (plain `http` only on loopback unless allowed explicitly).
//!
//! # Authorization
//! Route rules ([`JwtAuthBuilder::route`] with [`Require`]) demand scopes or roles. For checks
//! that depend on the object (a patient may read only their own record), take [`Access`] in the
//! handler: its [`Access::ensure`] answers with the same rendered 403, which the audit layer sees.
//!
//! # Revocation and caching
//! With a [`RevocationStore`] configured, every request's `jti` is checked (one Redis command
//! with the Redis store). Verified tokens are cached, so a repeated RS256 token skips its
//! signature check: bounded ([`JwtAuthBuilder::cache_verified`]), keyed by a 128-bit keyed digest
//! of the token (never the token itself), never past `exp`, emptied when the published keys
//! change.

mod cache;
mod challenge;
mod claims;
pub mod config;
#[cfg(feature = "jwks")]
mod jwks;
mod keys;
mod layer;
mod policy;
mod require;
mod revocation;
mod service;
mod token;
mod verify;

pub use claims::{ClaimNames, Claims, RawClaims};
pub use jsonwebtoken::Algorithm;
#[cfg(feature = "jwks")]
pub use jwks::{Jwks, JwksBuilder, JwksError};
pub use keys::VerifyKey;
pub use layer::{JwtAuthBuilder, JwtAuthLayer};
pub use require::{Access, Denied, Require};
#[cfg(feature = "memory")]
pub use revocation::MemoryRevocationStore;
#[cfg(feature = "redis")]
pub use revocation::RedisRevocationStore;
pub use revocation::RevocationStore;
pub use service::{JwtAuth, ResponseFuture};

/// With the `axum` feature: [`Claims<T>`] and [`Access`] as extractors, [`Denied`] as a response.
#[cfg(feature = "axum")]
mod axum_integration {
    use axum::extract::FromRequestParts;
    use axum::response::{IntoResponse, Response};
    use http::StatusCode;
    use http::request::Parts;

    use std::sync::Arc;

    use super::challenge::Failure;
    use super::require::Denials;
    use super::{Access, Claims, Denied};
    use crate::principal::Principal;
    use crate::rejection::{ProblemRenderer, Rejection, RejectionContext, RenderRejection};

    impl IntoResponse for Denied {
        fn into_response(self) -> Response {
            self.into_http_response().map(axum::body::Body::from)
        }
    }

    /// 401 when the caller is anonymous or unknown; 500 when an authenticated caller's request
    /// lacks what the handler asks for (the layer was configured for another claims type, or is
    /// missing): a wiring mistake, not the caller's. Rendered like the layer's own refusals.
    fn missing(parts: &Parts, what: &str) -> Response {
        let authenticated = parts
            .extensions
            .get::<Principal>()
            .is_some_and(|p| !p.is_anonymous());
        let denials = parts.extensions.get::<Arc<Denials>>();
        let rejection = if authenticated {
            Rejection::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "auth_misconfigured",
                format!(
                    "The handler asks for {what}, which the authentication layer does not provide."
                ),
            )
        } else {
            Failure::Missing.rejection(denials.map_or("api", |d| &d.realm))
        };
        let context = RejectionContext::of_parts(
            &parts.method,
            &parts.uri,
            &parts.headers,
            parts.extensions.get(),
        );
        let mut response = match denials {
            Some(denials) => denials.renderer.render(&rejection, &context),
            None => ProblemRenderer::new().render(&rejection, &context),
        };
        response.extensions_mut().insert(rejection);
        response.map(axum::body::Body::from)
    }

    impl<T, S> FromRequestParts<S> for Claims<T>
    where
        T: Send + Sync + 'static,
        S: Send + Sync,
    {
        type Rejection = Response;

        async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Response> {
            parts
                .extensions
                .get::<Claims<T>>()
                .cloned()
                .ok_or_else(|| missing(parts, std::any::type_name::<Claims<T>>()))
        }
    }

    impl<S: Send + Sync> FromRequestParts<S> for Access {
        type Rejection = Response;

        async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Response> {
            Access::of(parts).ok_or_else(|| missing(parts, "Access"))
        }
    }
}
