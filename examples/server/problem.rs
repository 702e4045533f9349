//! Problems (RFC 9457) and the extractors that answer with them; who may act for a patient.

use api_policy::auth::Denied;
use api_policy::idempotency::NotExecuted;
use api_policy::principal::Principal;
use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

#[derive(Debug, Serialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub title: &'static str,
    pub status: u16,
    pub detail: String,
    pub error: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<&'static str>,
}

impl Problem {
    pub fn new(status: StatusCode, error: &'static str, detail: impl Into<String>) -> Self {
        Self {
            kind: "about:blank",
            title: status.canonical_reason().unwrap_or("Error"),
            status: status.as_u16(),
            detail: detail.into(),
            error,
            field: None,
        }
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", detail)
    }

    /// 422 `validation_failed` naming the field.
    pub fn invalid(field: &'static str, detail: impl Into<String>) -> Self {
        Self {
            field: Some(field),
            ..Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
                detail,
            )
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let content_type = HeaderValue::from_static("application/problem+json");
        // The array of headers is applied after `Json`, replacing its content type.
        let mut response =
            (status, [(header::CONTENT_TYPE, content_type)], Json(self)).into_response();
        // Every problem in this demo is answered before any data changes (bad input, an unknown
        // id, a slot already taken), so the idempotency layer must not keep it as the key's
        // answer: the corrected retry of a failed booking may reuse its key.
        response.extensions_mut().insert(NotExecuted);
        response
    }
}

/// `Json<T>`, but a body that is not JSON, or not this JSON, gets a problem, not plain text.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = Problem;

    async fn from_request(request: Request, state: &S) -> Result<Self, Problem> {
        match Json::<T>::from_request(request, state).await {
            Ok(Json(value)) => Ok(Self(value)),
            Err(rejection) => {
                let error = match rejection {
                    JsonRejection::JsonSyntaxError(_) => "malformed_json",
                    JsonRejection::MissingJsonContentType(_) => "unsupported_media_type",
                    _ => "invalid_body",
                };
                Err(Problem::new(
                    rejection.status(),
                    error,
                    rejection.body_text(),
                ))
            }
        }
    }
}

/// The `{id}` path segment, with a problem for one that does not decode.
pub struct Id(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Id {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        match Path::<String>::from_request_parts(parts, state).await {
            Ok(Path(id)) => Ok(Self(id)),
            Err(rejection) => Err(Problem::new(
                rejection.status(),
                "invalid_path",
                rejection.body_text(),
            )),
        }
    }
}

/// A refusal from a handler: one of ours, or the authentication layer's own 403 (same renderer
/// and `WWW-Authenticate` challenge as its other refusals).
pub enum ApiError {
    Problem(Problem),
    Denied(Denied),
}

impl From<Problem> for ApiError {
    fn from(problem: Problem) -> Self {
        Self::Problem(problem)
    }
}

impl From<Denied> for ApiError {
    fn from(denied: Denied) -> Self {
        Self::Denied(denied)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            Self::Problem(problem) => problem.into_response(),
            Self::Denied(denied) => denied.into_response(),
        }
    }
}

/// Doctors and admins act for every patient; a patient only for themselves, its token's subject
/// being its patient id.
pub fn may_act_for(me: &Principal, patient_id: &str) -> bool {
    me.has_role("doctor")
        || me.has_role("admin")
        || (me.has_role("patient") && &*me.id == patient_id)
}
