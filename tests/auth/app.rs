//! The app: an axum Router with a few routes that show what the layer found, driven in-process,
//! and helpers to send it requests and read its refusals.

use std::convert::Infallible;

use api_policy::auth::{Access, Claims, Denied, JwtAuth, JwtAuthLayer, RawClaims};
use api_policy::body::PolicyBody;
use api_policy::principal::Principal;
use axum::Router;
use axum::body::Body;
use axum::extract::Path;
use axum::routing::get;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::{Layer, ServiceExt};

async fn me(principal: Principal, Claims(claims): Claims<RawClaims>) -> axum::Json<Value> {
    axum::Json(json!({
        "id": &*principal.id,
        "kind": format!("{:?}", principal.kind),
        "tier": principal.tier.as_deref(),
        "roles": principal.roles.iter().map(|r| &**r).collect::<Vec<_>>(),
        "scopes": principal.scopes.iter().map(|r| &**r).collect::<Vec<_>>(),
        "claim_sub": claims.get("sub"),
    }))
}

async fn patient(access: Access, Path(id): Path<String>) -> Result<String, Denied> {
    let me = access.principal();
    access.ensure(
        me.has_role("doctor") || *me.id == *id,
        "A patient may read only their own record.",
    )?;
    Ok(format!("record of {id}"))
}

async fn whoever(principal: Option<Principal>) -> String {
    principal.map_or_else(|| "nobody".into(), |p| format!("{:?}:{}", p.kind, p.id))
}

pub fn router() -> Router {
    Router::new()
        .route("/me", get(me))
        .route("/patients/{id}", get(patient))
        .route("/admin/users", get(|| async { "users" }))
        .route("/reports", get(|| async { "reports" }))
        .route("/whoever", get(whoever))
        .route(
            "/claims",
            get(|Claims(claims): Claims<RawClaims>| async move { format!("{}", claims.len()) }),
        )
}

pub type Stack = JwtAuth<Router>;

pub fn stack(layer: &JwtAuthLayer) -> Stack {
    layer.layer(router())
}

pub async fn send(stack: &Stack, request: Request<Body>) -> Response<PolicyBody<Body>> {
    stack
        .clone()
        .oneshot(request)
        .await
        .unwrap_or_else(|e: Infallible| match e {})
}

pub fn bearer(path: &str, token: &str) -> Request<Body> {
    Request::get(path)
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap()
}

pub fn header<B>(response: &Response<B>, name: &str) -> String {
    response
        .headers()
        .get(name)
        .map_or("<missing>".into(), |v| v.to_str().unwrap().to_string())
}

pub async fn body(response: Response<PolicyBody<Body>>) -> Value {
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
}

/// Status, the `error` member of the problem body, and the challenge.
pub async fn refusal(response: Response<PolicyBody<Body>>) -> (StatusCode, String, String) {
    let status = response.status();
    let challenge = header(&response, "www-authenticate");
    assert_eq!(
        header(&response, "content-type"),
        "application/problem+json"
    );
    let problem = body(response).await;
    assert_eq!(problem["status"], status.as_u16());
    (
        status,
        problem["error"].as_str().unwrap_or("").to_string(),
        challenge,
    )
}

pub fn invalid_token(description: &str) -> String {
    format!("Bearer realm=\"api\", error=\"invalid_token\", error_description=\"{description}\"")
}
