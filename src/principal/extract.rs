//! In an axum handler, `Principal` requires a caller an earlier layer identified (401 problem
//! otherwise) and `Option<Principal>` accepts anonymous requests.

use std::convert::Infallible;

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::response::Response;
use http::StatusCode;
use http::request::Parts;

use super::Principal;
use crate::rejection::{ProblemRenderer, Rejection, RejectionContext, RenderRejection};

impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Response> {
        if let Some(principal) = parts.extensions.get::<Principal>() {
            return Ok(principal.clone());
        }
        let rejection = Rejection::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "This route needs an authenticated caller.",
        )
        .with_header(
            http::header::WWW_AUTHENTICATE,
            http::HeaderValue::from_static("Bearer realm=\"api\""),
        );
        let context = RejectionContext::of_parts(
            &parts.method,
            &parts.uri,
            &parts.headers,
            parts.extensions.get(),
        );
        Err(ProblemRenderer::new()
            .render(&rejection, &context)
            .map(axum::body::Body::from))
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for Principal {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Option<Self>, Infallible> {
        Ok(parts.extensions.get::<Principal>().cloned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "axum")]
    #[tokio::test]
    async fn axum_handlers_extract_the_principal() {
        use axum::routing::get;
        use tower::ServiceExt;

        let app = axum::Router::new()
            .route("/me", get(|p: Principal| async move { p.id.to_string() }))
            .route(
                "/maybe",
                get(|p: Option<Principal>| async move { format!("{:?}", p.map(|p| p.id.clone())) }),
            );
        let request = |path: &str, principal: Option<Principal>| {
            let mut request = http::Request::get(path)
                .body(axum::body::Body::empty())
                .unwrap();
            if let Some(p) = principal {
                request.extensions_mut().insert(p);
            }
            request
        };
        let body = |response: http::Response<axum::body::Body>| async move {
            let bytes = http_body_util::BodyExt::collect(response.into_body())
                .await
                .unwrap()
                .to_bytes();
            String::from_utf8(bytes.to_vec()).unwrap()
        };
        let response = app
            .clone()
            .oneshot(request("/me", Some(Principal::user("u7"))))
            .await
            .unwrap();
        assert_eq!(body(response).await, "u7");
        let response = app.clone().oneshot(request("/me", None)).await.unwrap();
        assert_eq!(response.status(), 401);
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
        assert_eq!(
            response.headers()["www-authenticate"],
            "Bearer realm=\"api\""
        );
        assert!(
            body(response)
                .await
                .contains("\"error\":\"unauthenticated\"")
        );
        let response = app.clone().oneshot(request("/maybe", None)).await.unwrap();
        assert_eq!(body(response).await, "None");
    }
}
