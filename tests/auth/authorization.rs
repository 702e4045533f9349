//! Authorization: scopes and roles per route, object-level denials, gRPC callers, optional mode,
//! typed claims, and tokens in a cookie.

use std::convert::Infallible;

use api_policy::Rejection;
use api_policy::auth::{Claims, Require};
use api_policy::principal::{Principal, PrincipalKind};
use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::{Request, Response, StatusCode};
use serde_json::json;
use tower::{Layer, ServiceExt};

use crate::app::{bearer, body, header, refusal, send, stack};
use crate::tokens::{claims, hs_builder, hs256};

#[tokio::test]
async fn route_rules_demand_scopes_and_roles_with_403_insufficient_scope() {
    let layer = hs_builder()
        .route("GET /admin/*", Require::any_role(["admin"]))
        .route(
            "GET /reports",
            Require::scopes(["reports:read", "reports:export"]),
        )
        .build()
        .unwrap();
    let app = stack(&layer);
    let nurse = hs256(&claims(
        "n1",
        json!({"role": "nurse", "scope": "reports:read"}),
    ));
    let forbidden = send(&app, bearer("/reports", &nurse)).await;
    assert_eq!(
        forbidden
            .extensions()
            .get::<Principal>()
            .map(|p| p.id.to_string()),
        Some("n1".into()),
        "the refused caller is on the response, for the audit layer"
    );
    let (status, error, challenge) = refusal(forbidden).await;
    assert_eq!(
        (status, error.as_str()),
        (StatusCode::FORBIDDEN, "insufficient_scope")
    );
    assert_eq!(
        challenge,
        "Bearer realm=\"api\", error=\"insufficient_scope\", error_description=\"This request needs the scope reports:export.\", scope=\"reports:read reports:export\""
    );
    assert_eq!(
        refusal(send(&app, bearer("/admin/users", &nurse)).await)
            .await
            .2,
        "Bearer realm=\"api\", error=\"insufficient_scope\", error_description=\"This request needs one of the roles admin.\""
    );
    let admin = hs256(&claims(
        "a1",
        json!({"roles": ["admin"], "scope": "reports:read reports:export"}),
    ));
    assert_eq!(
        send(&app, bearer("/admin/users", &admin)).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        send(&app, bearer("/reports", &admin)).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn object_level_denials_are_rendered_like_the_layers_own() {
    let app = stack(&hs_builder().build().unwrap());
    let patient = hs256(&claims("pat_1", json!({"role": "patient"})));
    assert_eq!(
        send(&app, bearer("/patients/pat_1", &patient))
            .await
            .status(),
        StatusCode::OK
    );
    let denied = send(&app, bearer("/patients/pat_2", &patient)).await;
    let rejection = denied.extensions().get::<Rejection>().cloned().unwrap();
    assert_eq!(rejection.error, "insufficient_scope");
    assert_eq!(
        refusal(denied).await,
        (
            StatusCode::FORBIDDEN,
            "insufficient_scope".into(),
            "Bearer realm=\"api\", error=\"insufficient_scope\", error_description=\"A patient may read only their own record.\"".into()
        )
    );
    let doctor = hs256(&claims("doc_1", json!({"role": "doctor"})));
    assert_eq!(
        send(&app, bearer("/patients/pat_2", &doctor))
            .await
            .status(),
        StatusCode::OK
    );

    // gRPC callers get PERMISSION_DENIED from the same helper.
    let grpc = Request::get("/patients/pat_2")
        .header("authorization", format!("Bearer {patient}"))
        .header("content-type", "application/grpc")
        .body(Body::empty())
        .unwrap();
    let response = send(&app, grpc).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "grpc-status"), "7");
}

#[tokio::test]
async fn grpc_callers_get_grpc_codes_and_renderers_can_be_replaced() {
    let app = stack(
        &hs_builder()
            .route("GET /admin/*", Require::any_role(["admin"]))
            .build()
            .unwrap(),
    );
    let grpc = |token: Option<&str>, path: &str| {
        let mut request = Request::get(path).header("content-type", "application/grpc+proto");
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        request.body(Body::empty()).unwrap()
    };
    let user = hs256(&claims("u", json!({})));
    for (token, path, code) in [
        (None, "/me", "16"),
        (Some("x.y.z"), "/me", "16"),
        (Some(user.as_str()), "/admin/users", "7"),
        (Some("a b"), "/me", "3"),
    ] {
        let response = send(&app, grpc(token, path)).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(header(&response, "content-type"), "application/grpc");
        assert_eq!(header(&response, "grpc-status"), code, "{token:?} {path}");
    }

    let custom = stack(
        &hs_builder()
            .renderer(
                |rejection: &Rejection, _: &api_policy::rejection::RejectionContext<'_>| {
                    let mut response =
                        Response::new(bytes::Bytes::from(format!("nope: {}", rejection.error)));
                    *response.status_mut() = rejection.status;
                    for (name, value) in &rejection.headers {
                        response.headers_mut().append(name, value.clone());
                    }
                    response
                },
            )
            .build()
            .unwrap(),
    );
    let response = send(&custom, bearer("/me", "x.y.z")).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(header(&response, "www-authenticate").contains("invalid_token"));
    assert_eq!(body(response).await, json!("nope: invalid_token"));
}

#[tokio::test]
async fn optional_mode_lets_anonymous_callers_through_but_not_bad_tokens() {
    let app = stack(
        &hs_builder()
            .optional()
            .route("GET /me", Require::token())
            .build()
            .unwrap(),
    );
    let anonymous = send(&app, Request::get("/whoever").body(Body::empty()).unwrap()).await;
    assert_eq!(
        anonymous.extensions().get::<Principal>().map(|p| p.kind),
        Some(PrincipalKind::Anonymous)
    );
    assert_eq!(body(anonymous).await, json!("Anonymous:anonymous"));
    let token = hs256(&claims("u7", json!({})));
    assert_eq!(
        body(send(&app, bearer("/whoever", &token)).await).await,
        json!("User:u7")
    );
    assert_eq!(
        refusal(send(&app, bearer("/whoever", "x.y.z")).await)
            .await
            .1,
        "invalid_token"
    );
    let me = send(&app, Request::get("/me").body(Body::empty()).unwrap()).await;
    assert_eq!(refusal(me).await.2, "Bearer realm=\"api\"");
    // A handler asking for claims answers an anonymous caller 401, as the layer would.
    let claims = send(&app, Request::get("/claims").body(Body::empty()).unwrap()).await;
    assert_eq!(
        refusal(claims).await,
        (
            StatusCode::UNAUTHORIZED,
            "unauthenticated".into(),
            "Bearer realm=\"api\"".into()
        )
    );
}

#[tokio::test]
async fn typed_claims_are_deserialised_and_a_misfit_token_is_refused() {
    #[derive(serde::Deserialize)]
    struct Mine {
        sub: String,
        tenant: String,
    }
    let layer = hs_builder().claims::<Mine>().build().unwrap();
    let app =
        layer.layer(Router::new().route(
            "/tenant",
            get(|Claims(claims): Claims<Mine>| async move {
                format!("{}@{}", claims.sub, claims.tenant)
            }),
        ));
    let send = |request| {
        let app = app.clone();
        async move {
            app.oneshot(request)
                .await
                .unwrap_or_else(|e: Infallible| match e {})
        }
    };
    let good = hs256(&claims("u1", json!({"tenant": "acme"})));
    let response = send(bearer("/tenant", &good)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(body(response).await, json!("u1@acme"));
    let misfit = hs256(&claims("u1", json!({})));
    assert_eq!(
        refusal(send(bearer("/tenant", &misfit)).await).await.1,
        "invalid_token"
    );
}

#[tokio::test]
async fn a_cookie_can_carry_the_token() {
    let app = stack(&hs_builder().cookie("access_token").build().unwrap());
    let token = hs256(&claims("c1", json!({})));
    let request = Request::get("/whoever")
        .header("cookie", format!("theme=dark; access_token={token}"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(body(send(&app, request).await).await, json!("User:c1"));
}
