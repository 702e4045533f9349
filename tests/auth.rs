//! The JWT layer over real stacks: an axum Router driven in-process, real keys, real JWKS
//! documents served over loopback HTTP, and real Redis for the shared revocation list.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use api_policy::Rejection;
use api_policy::auth::{
    Access, Algorithm, Claims, Denied, Jwks, JwtAuth, JwtAuthBuilder, JwtAuthLayer,
    MemoryRevocationStore, RawClaims, RedisRevocationStore, Require, VerifyKey,
};
use api_policy::backend::{MemoryBackend, RedisBackend};
use api_policy::body::PolicyBody;
use api_policy::clock::ManualClock;
use api_policy::principal::{Principal, PrincipalKind};
use api_policy::{FailurePolicy, StoreError};
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::routing::get;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use jsonwebtoken::{EncodingKey, Header};
use serde_json::{Value, json};
use tower::{Layer, ServiceExt};

const ISS: &str = "https://issuer.test";
const AUD: &str = "test-api";
const SECRET: &[u8] = b"test-hmac-secret-of-at-least-32-bytes";
/// 2100-01-01: far enough that system-clock tests never see it pass.
const FAR: u64 = 4_102_444_800;
const NOW: u64 = 1_790_000_000;

// ---------- keys and tokens ----------

fn key_file() -> &'static Value {
    static FILE: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    FILE.get_or_init(|| {
        serde_json::from_str(include_str!("data/auth-keys.json")).expect("auth-keys.json")
    })
}

fn test_key(name: &str) -> &'static Value {
    &key_file()["keys"][name]
}

fn private_key(name: &str) -> (Algorithm, EncodingKey) {
    let key = test_key(name);
    let pem = key["private_pem"].as_str().unwrap().as_bytes();
    match key["alg"].as_str().unwrap() {
        "RS256" => (Algorithm::RS256, EncodingKey::from_rsa_pem(pem).unwrap()),
        "ES256" => (Algorithm::ES256, EncodingKey::from_ec_pem(pem).unwrap()),
        "EdDSA" => (Algorithm::EdDSA, EncodingKey::from_ed_pem(pem).unwrap()),
        other => panic!("{other}"),
    }
}

fn claims(sub: &str, extra: Value) -> Value {
    let mut claims = json!({"iss": ISS, "aud": AUD, "sub": sub, "iat": NOW, "exp": FAR});
    if let (Value::Object(base), Value::Object(extra)) = (&mut claims, extra) {
        base.extend(extra);
    }
    claims
}

fn hs256(claims: &Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(SECRET),
    )
    .unwrap()
}

/// A token signed by the named test key, with its name as `kid`.
fn signed(key: &str, claims: &Value) -> String {
    let (alg, encoding) = private_key(key);
    let mut header = Header::new(alg);
    header.kid = Some(key.to_string());
    jsonwebtoken::encode(&header, claims, &encoding).unwrap()
}

/// A token with a header of our own making, signed with HMAC-SHA256 over `secret`.
fn forged(header: &Value, claims: &Value, secret: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let message = format!(
        "{}.{}",
        b64.encode(header.to_string()),
        b64.encode(claims.to_string())
    );
    let signature = jsonwebtoken::crypto::sign(
        message.as_bytes(),
        &EncodingKey::from_secret(secret),
        Algorithm::HS256,
    )
    .unwrap();
    format!("{message}.{signature}")
}

fn hs_builder() -> JwtAuthBuilder {
    JwtAuthLayer::builder()
        .key(VerifyKey::hmac(Algorithm::HS256, SECRET).unwrap())
        .issuer([ISS])
        .audience([AUD])
}

// ---------- the app ----------

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

fn router() -> Router {
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

type Stack = JwtAuth<Router>;

fn stack(layer: &JwtAuthLayer) -> Stack {
    layer.layer(router())
}

async fn send(stack: &Stack, request: Request<Body>) -> Response<PolicyBody<Body>> {
    stack
        .clone()
        .oneshot(request)
        .await
        .unwrap_or_else(|e: Infallible| match e {})
}

fn bearer(path: &str, token: &str) -> Request<Body> {
    Request::get(path)
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap()
}

fn header<B>(response: &Response<B>, name: &str) -> String {
    response
        .headers()
        .get(name)
        .map_or("<missing>".into(), |v| v.to_str().unwrap().to_string())
}

async fn body(response: Response<PolicyBody<Body>>) -> Value {
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
}

/// Status, the `error` member of the problem body, and the challenge.
async fn refusal(response: Response<PolicyBody<Body>>) -> (StatusCode, String, String) {
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

fn invalid_token(description: &str) -> String {
    format!("Bearer realm=\"api\", error=\"invalid_token\", error_description=\"{description}\"")
}

// ---------- RFC 6750 answers ----------

#[tokio::test]
async fn no_credentials_is_a_401_challenge_without_error_code() {
    let app = stack(&hs_builder().build().unwrap());
    let none = send(&app, Request::get("/me").body(Body::empty()).unwrap()).await;
    assert_eq!(
        refusal(none).await,
        (
            StatusCode::UNAUTHORIZED,
            "unauthenticated".into(),
            "Bearer realm=\"api\"".into()
        )
    );
    // Another scheme is not bearer credentials either (RFC 6750 section 3.1).
    let basic = Request::get("/me")
        .header("authorization", "Basic dXNlcjpwYXNz")
        .body(Body::empty())
        .unwrap();
    assert_eq!(
        refusal(send(&app, basic).await).await.2,
        "Bearer realm=\"api\""
    );
    // Tokens in the query string are never read.
    let token = hs256(&claims("user_1", json!({})));
    let query = Request::get(format!("/me?access_token={token}"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(
        refusal(send(&app, query).await).await.2,
        "Bearer realm=\"api\""
    );
}

#[tokio::test]
async fn malformed_authorization_is_a_400_invalid_request() {
    let app = stack(&hs_builder().max_token_len(2048).build().unwrap());
    let long = "a".repeat(2049);
    for value in [
        "Bearer",
        "Bearer a b",
        "Bearer {x}",
        &format!("Bearer {long}"),
    ] {
        let request = Request::get("/me")
            .header("authorization", value)
            .body(Body::empty())
            .unwrap();
        let (status, error, challenge) = refusal(send(&app, request).await).await;
        assert_eq!(
            (status, error.as_str()),
            (StatusCode::BAD_REQUEST, "invalid_request"),
            "{value}"
        );
        assert!(
            challenge.starts_with(
                "Bearer realm=\"api\", error=\"invalid_request\", error_description=\""
            ),
            "{challenge}"
        );
    }
    let token = hs256(&claims("user_1", json!({})));
    let twice = Request::get("/me")
        .header("authorization", format!("Bearer {token}"))
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(refusal(send(&app, twice).await).await.1, "invalid_request");
}

#[tokio::test]
async fn a_valid_token_yields_principal_claims_and_response_extension() {
    let app = stack(&hs_builder().build().unwrap());
    let token = hs256(&claims(
        "pat_1",
        json!({"tier": "pro", "role": "patient", "scope": "patients:read appointments:write", "sid": "s-9"}),
    ));
    let response = send(&app, bearer("/me", &token)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let principal = response.extensions().get::<Principal>().cloned().unwrap();
    assert_eq!(&*principal.id, "pat_1");
    assert_eq!(principal.session_id.as_deref(), Some("s-9"));
    assert_eq!(
        body(response).await,
        json!({"id": "pat_1", "kind": "User", "tier": "pro", "roles": ["patient"],
               "scopes": ["patients:read", "appointments:write"], "claim_sub": "pat_1"})
    );
}

#[tokio::test]
async fn expiry_and_not_before_at_leeway_zero_follow_the_layer_clock() {
    let clock = ManualClock::at_secs(NOW);
    let app = stack(&hs_builder().clock(clock.clone()).build().unwrap());
    let expiring = hs256(&claims("u", json!({"exp": NOW + 1})));
    assert_eq!(
        send(&app, bearer("/me", &expiring)).await.status(),
        StatusCode::OK
    );
    clock.advance(Duration::from_secs(1));
    // At exp exactly the token is over (RFC 7519: "on or after"), cached or not.
    assert_eq!(
        refusal(send(&app, bearer("/me", &expiring)).await).await,
        (
            StatusCode::UNAUTHORIZED,
            "invalid_token".into(),
            invalid_token("The token has expired.")
        )
    );
    // A fractional `nbf` is rounded up: not even half a second early.
    let half = hs256(&claims("u", json!({"nbf": NOW as f64 + 1.5})));
    assert_eq!(
        send(&app, bearer("/me", &half)).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let early = hs256(&claims("u", json!({"nbf": NOW + 10})));
    assert_eq!(
        refusal(send(&app, bearer("/me", &early)).await).await.2,
        invalid_token("The token is not valid yet (`nbf`).")
    );
    let no_exp = hs256(&json!({"iss": ISS, "aud": AUD, "sub": "u"}));
    assert_eq!(
        refusal(send(&app, bearer("/me", &no_exp)).await).await.2,
        invalid_token("The token has no expiry (`exp`).")
    );

    let lenient = stack(
        &hs_builder()
            .clock(clock.clone())
            .leeway(Duration::from_secs(5))
            .build()
            .unwrap(),
    );
    let just_expired = hs256(&claims("u", json!({"exp": NOW - 3})));
    assert_eq!(
        send(&lenient, bearer("/me", &just_expired)).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn wrong_issuer_audience_type_and_lifetime_are_invalid_tokens() {
    let app = stack(&hs_builder().build().unwrap());
    let cases = [
        (
            claims("u", json!({"iss": "https://evil.test"})),
            "The token was issued by an issuer this API does not trust.",
        ),
        (
            claims("u", json!({"aud": "another-api"})),
            "The token is meant for another audience.",
        ),
        (
            json!({"aud": AUD, "sub": "u", "exp": FAR}),
            "The token was issued by an issuer this API does not trust.",
        ),
        (
            json!({"iss": ISS, "sub": "u", "exp": FAR}),
            "The token is meant for another audience.",
        ),
        (claims("u", json!({"aud": ["other-api", AUD]})), ""),
        (claims("", json!({})), "The token names no subject."),
    ];
    for (claims, description) in cases {
        let response = send(&app, bearer("/me", &hs256(&claims))).await;
        if description.is_empty() {
            assert_eq!(
                response.status(),
                StatusCode::OK,
                "an audience among several: {claims}"
            );
            continue;
        }
        assert_eq!(
            refusal(response).await,
            (
                StatusCode::UNAUTHORIZED,
                "invalid_token".into(),
                invalid_token(description)
            ),
            "{claims}"
        );
    }

    let typed = stack(&hs_builder().typ("at+jwt").build().unwrap());
    let with_typ = |typ: &str| {
        let mut header = Header::new(Algorithm::HS256);
        header.typ = Some(typ.into());
        jsonwebtoken::encode(
            &header,
            &claims("u", json!({})),
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap()
    };
    assert_eq!(
        send(&typed, bearer("/me", &with_typ("at+jwt")))
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        send(&typed, bearer("/me", &with_typ("application/AT+JWT")))
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        refusal(send(&typed, bearer("/me", &with_typ("JWT"))).await)
            .await
            .2,
        invalid_token("The token's type is not at+jwt.")
    );

    let clock = ManualClock::at_secs(NOW);
    let phi = stack(
        &hs_builder()
            .clock(clock)
            .max_lifetime(Duration::from_secs(15 * 60))
            .build()
            .unwrap(),
    );
    let fifteen = hs256(&claims("u", json!({"iat": NOW, "exp": NOW + 900})));
    assert_eq!(
        send(&phi, bearer("/me", &fifteen)).await.status(),
        StatusCode::OK
    );
    let sixteen = hs256(&claims("u", json!({"iat": NOW, "exp": NOW + 960})));
    assert_eq!(
        refusal(send(&phi, bearer("/me", &sixteen)).await).await.2,
        invalid_token("The token's lifetime exceeds the 900 s this API accepts.")
    );
    let no_iat = hs256(&json!({"iss": ISS, "aud": AUD, "sub": "u", "exp": NOW + 60}));
    assert_eq!(
        refusal(send(&phi, bearer("/me", &no_iat)).await).await.2,
        invalid_token("The token must carry `iat` and `exp` to show its lifetime.")
    );
}

#[tokio::test]
async fn alg_none_other_algorithms_and_key_confusion_are_refused() {
    let app = stack(&hs_builder().build().unwrap());
    let none = {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!(
            "{}.{}.",
            b64.encode(r#"{"alg":"none","typ":"JWT"}"#),
            b64.encode(claims("u", json!({})).to_string())
        )
    };
    assert_eq!(
        refusal(send(&app, bearer("/me", &none)).await).await.1,
        "invalid_token"
    );

    // Only HS256 is allowed here: an RS256 token is refused before any key is tried.
    let rs = signed("rsa-a", &claims("u", json!({})));
    assert_eq!(
        refusal(send(&app, bearer("/me", &rs)).await).await.2,
        invalid_token("The algorithm RS256 is not accepted here.")
    );

    // Key confusion: the RSA public key's PEM used as an HMAC secret.
    let rsa_only = stack(
        &JwtAuthLayer::builder()
            .key(
                VerifyKey::rsa_pem(
                    Algorithm::RS256,
                    test_key("rsa-a")["public_pem"].as_str().unwrap(),
                )
                .unwrap()
                .with_kid("rsa-a"),
            )
            .algorithms([Algorithm::RS256, Algorithm::HS256])
            .issuer([ISS])
            .audience([AUD])
            .build()
            .unwrap(),
    );
    assert_eq!(
        send(&rsa_only, bearer("/me", &rs)).await.status(),
        StatusCode::OK
    );
    let pem = test_key("rsa-a")["public_pem"].as_str().unwrap().as_bytes();
    for kid in [Some("rsa-a"), None] {
        let mut header = json!({"alg": "HS256", "typ": "JWT"});
        if let Some(kid) = kid {
            header["kid"] = json!(kid);
        }
        let confused = forged(&header, &claims("u", json!({})), pem);
        let (status, error, _) = refusal(send(&rsa_only, bearer("/me", &confused)).await).await;
        assert_eq!(
            (status, error.as_str()),
            (StatusCode::UNAUTHORIZED, "invalid_token"),
            "{kid:?}"
        );
    }

    // A tampered payload fails the signature.
    let good = hs256(&claims("u", json!({})));
    let mut parts: Vec<&str> = good.split('.').collect();
    let other = {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(claims("admin", json!({})).to_string())
    };
    parts[1] = &other;
    assert_eq!(
        refusal(send(&app, bearer("/me", &parts.join("."))).await)
            .await
            .2,
        invalid_token("The token's signature does not verify.")
    );
    // Garbage.
    assert_eq!(
        refusal(send(&app, bearer("/me", "not.a.jwt")).await)
            .await
            .1,
        "invalid_token"
    );
}

#[tokio::test]
async fn every_algorithm_family_verifies_with_its_static_key() {
    let jwk = |name: &str| test_key(name)["jwk"].to_string();
    let layer = JwtAuthLayer::builder()
        .key(VerifyKey::from_jwk(&jwk("rsa-a")).unwrap())
        .key(
            VerifyKey::ec_pem(
                Algorithm::ES256,
                test_key("es-a")["public_pem"].as_str().unwrap(),
            )
            .unwrap()
            .with_kid("es-a"),
        )
        .key(
            VerifyKey::ed_pem(test_key("ed-a")["public_pem"].as_str().unwrap())
                .unwrap()
                .with_kid("ed-a"),
        )
        .key(VerifyKey::hmac(Algorithm::HS512, [9u8; 64]).unwrap())
        .issuer([ISS])
        .audience([AUD])
        .build()
        .unwrap();
    let app = stack(&layer);
    for key in ["rsa-a", "es-a", "ed-a"] {
        let token = signed(key, &claims("u", json!({})));
        assert_eq!(
            send(&app, bearer("/me", &token)).await.status(),
            StatusCode::OK,
            "{key}"
        );
    }
    let hs512 = jsonwebtoken::encode(
        &Header::new(Algorithm::HS512),
        &claims("u", json!({})),
        &EncodingKey::from_secret(&[9u8; 64]),
    )
    .unwrap();
    assert_eq!(
        send(&app, bearer("/me", &hs512)).await.status(),
        StatusCode::OK
    );
    // A key configured without a kid verifies tokens whatever kid they name.
    let mut header = Header::new(Algorithm::HS512);
    header.kid = Some("2026-11".into());
    let named = jsonwebtoken::encode(
        &header,
        &claims("u", json!({})),
        &EncodingKey::from_secret(&[9u8; 64]),
    )
    .unwrap();
    assert_eq!(
        send(&app, bearer("/me", &named)).await.status(),
        StatusCode::OK
    );
    // rsa-b is not configured: its kid is unknown, and with static keys nothing is fetched.
    let stranger = signed("rsa-b", &claims("u", json!({})));
    assert_eq!(
        refusal(send(&app, bearer("/me", &stranger)).await).await.2,
        invalid_token("The token names a key this API does not know.")
    );
}

// ---------- authorization ----------

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

// ---------- revocation and the verified-token cache ----------

#[tokio::test]
async fn revoked_tokens_are_refused_even_when_cached() {
    let layer = hs_builder()
        .revocation(MemoryRevocationStore::new(&MemoryBackend::new()))
        .build()
        .unwrap();
    let app = stack(&layer);
    let token = hs256(&claims("u", json!({"jti": "t-1"})));
    assert_eq!(
        send(&app, bearer("/me", &token)).await.status(),
        StatusCode::OK
    );
    assert_eq!(layer.cached_tokens(), 1);
    layer.revoke("t-1", FAR).await.unwrap();
    assert_eq!(
        refusal(send(&app, bearer("/me", &token)).await).await.2,
        invalid_token("The token has been revoked.")
    );
    assert_eq!(layer.cached_tokens(), 0, "a revoked token leaves the cache");
    let other = hs256(&claims("u", json!({"jti": "t-2"})));
    assert_eq!(
        send(&app, bearer("/me", &other)).await.status(),
        StatusCode::OK
    );

    let without_store = hs_builder().build().unwrap();
    assert!(matches!(
        without_store.revoke("t-1", FAR).await,
        Err(StoreError::Invalid(_))
    ));
}

#[tokio::test]
async fn redis_revocation_is_shared_between_instances_and_expires_with_the_token() {
    let Some(url) = common::redis_or_skip("redis_revocation").await else {
        return;
    };
    let backend = |prefix: &str| {
        RedisBackend::builder(url.clone())
            .prefix(prefix)
            .build()
            .unwrap()
    };
    let prefix = common::unique_prefix("revocation");
    let one = hs_builder()
        .revocation(RedisRevocationStore::new(&backend(&prefix)))
        .build()
        .unwrap();
    let two = hs_builder()
        .revocation(RedisRevocationStore::new(&backend(&prefix)))
        .build()
        .unwrap();
    let token = hs256(&claims("u", json!({"jti": "shared-1"})));
    assert_eq!(
        send(&stack(&two), bearer("/me", &token)).await.status(),
        StatusCode::OK
    );
    one.revoke("shared-1", FAR).await.unwrap();
    assert_eq!(
        refusal(send(&stack(&two), bearer("/me", &token)).await)
            .await
            .2,
        invalid_token("The token has been revoked.")
    );
    let mut redis = common::raw_connection(&url).await;
    let expires: u64 = redis::cmd("EXPIRETIME")
        .arg(format!("{prefix}jti:shared-1"))
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(
        expires, FAR,
        "the entry lives exactly until the token's exp"
    );
}

#[tokio::test]
async fn an_unreachable_revocation_store_fails_closed_unless_told_otherwise() {
    let port = common::free_port();
    let dead = RedisBackend::builder(format!("redis://127.0.0.1:{port}"))
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let token = hs256(&claims("u", json!({"jti": "t-9"})));
    let closed = stack(
        &hs_builder()
            .revocation(RedisRevocationStore::new(&dead))
            .build()
            .unwrap(),
    );
    let response = send(&closed, bearer("/me", &token)).await;
    assert_eq!(header(&response, "retry-after"), "1");
    assert_eq!(
        refusal(response).await,
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "auth_unavailable".into(),
            "<missing>".into()
        )
    );
    let open = stack(
        &hs_builder()
            .revocation(RedisRevocationStore::new(&dead))
            .on_revocation_error(FailurePolicy::Open)
            .build()
            .unwrap(),
    );
    assert_eq!(
        send(&open, bearer("/me", &token)).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn cached_tokens_are_bounded_and_never_outlive_exp() {
    let clock = ManualClock::at_secs(NOW);
    let layer = hs_builder()
        .clock(clock.clone())
        .cache_verified(64)
        .build()
        .unwrap();
    let app = stack(&layer);
    for i in 0..200 {
        let token = hs256(&claims(&format!("u{i}"), json!({"exp": NOW + 100 + i})));
        assert_eq!(
            send(&app, bearer("/me", &token)).await.status(),
            StatusCode::OK
        );
    }
    assert!(layer.cached_tokens() <= 64, "{}", layer.cached_tokens());
    let token = hs256(&claims("late", json!({"exp": NOW + 10})));
    assert_eq!(
        send(&app, bearer("/me", &token)).await.status(),
        StatusCode::OK
    );
    clock.advance(Duration::from_secs(10));
    assert_eq!(
        refusal(send(&app, bearer("/me", &token)).await).await.1,
        "invalid_token"
    );
}

// ---------- JWKS over loopback HTTP ----------

#[derive(Default)]
struct Published {
    jwks: RwLock<Value>,
    cache_control: RwLock<String>,
    status: AtomicU16,
    delay_ms: std::sync::atomic::AtomicU64,
    jwks_fetches: AtomicUsize,
    discovery_fetches: AtomicUsize,
    stray_fetches: AtomicUsize,
    issuer: RwLock<String>,
}

struct IdentityProvider {
    addr: SocketAddr,
    state: Arc<Published>,
}

impl IdentityProvider {
    async fn start(keys: &[&str]) -> Self {
        let state = Arc::new(Published::default());
        state.status.store(200, Ordering::SeqCst);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        *state.issuer.write().unwrap() = format!("http://{addr}");
        let app = Router::new()
            .route(
                "/jwks.json",
                get(|State(s): State<Arc<Published>>| async move {
                    s.jwks_fetches.fetch_add(1, Ordering::SeqCst);
                    let delay = s.delay_ms.load(Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(delay)).await;
                    let status = StatusCode::from_u16(s.status.load(Ordering::SeqCst)).unwrap();
                    let body = s.jwks.read().unwrap().to_string();
                    let cache = s.cache_control.read().unwrap().clone();
                    let mut response = Response::new(Body::from(body));
                    *response.status_mut() = status;
                    if !cache.is_empty() {
                        response
                            .headers_mut()
                            .insert("cache-control", cache.parse().unwrap());
                    }
                    response
                }),
            )
            .route(
                "/.well-known/openid-configuration",
                get(|State(s): State<Arc<Published>>| async move {
                    s.discovery_fetches.fetch_add(1, Ordering::SeqCst);
                    let issuer = s.issuer.read().unwrap().clone();
                    let base = s.issuer.read().unwrap().clone();
                    axum::Json(json!({"issuer": issuer, "jwks_uri": format!("{base}/jwks.json")}))
                }),
            )
            .fallback(|State(s): State<Arc<Published>>| async move {
                s.stray_fetches.fetch_add(1, Ordering::SeqCst);
                StatusCode::NOT_FOUND
            })
            .with_state(state.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        let provider = Self { addr, state };
        provider.publish(keys);
        provider
    }

    fn publish(&self, keys: &[&str]) {
        let keys: Vec<Value> = keys.iter().map(|k| test_key(k)["jwk"].clone()).collect();
        *self.state.jwks.write().unwrap() = json!({"keys": keys});
    }

    fn url(&self) -> String {
        format!("http://{}/jwks.json", self.addr)
    }

    fn fetches(&self) -> usize {
        self.state.jwks_fetches.load(Ordering::SeqCst)
    }
}

fn jwks_layer(jwks: Jwks) -> JwtAuthLayer {
    JwtAuthLayer::builder()
        .jwks(jwks)
        .issuer([ISS])
        .audience([AUD])
        .build()
        .unwrap()
}

#[tokio::test]
async fn tokens_from_an_independent_implementation_verify_against_its_jwks() {
    let vectors: Value = serde_json::from_str(include_str!("data/jwt-tokens.json")).unwrap();
    let provider = IdentityProvider::start(&[]).await;
    *provider.state.jwks.write().unwrap() =
        serde_json::from_str(include_str!("data/jwt-jwks.json")).unwrap();
    let layer = JwtAuthLayer::builder()
        .jwks(
            Jwks::from_url(provider.url())
                .cooldown(Duration::ZERO)
                .build()
                .unwrap(),
        )
        .key(VerifyKey::hmac(Algorithm::HS256, vectors["hs256_secret"].as_str().unwrap()).unwrap())
        .issuer([vectors["issuer"].as_str().unwrap()])
        .audience([vectors["audience"].as_str().unwrap()])
        .build()
        .unwrap();
    let app = stack(&layer);
    for case in vectors["valid"].as_array().unwrap() {
        let token = case["token"].as_str().unwrap();
        let response = send(&app, bearer("/whoever", token)).await;
        assert_eq!(response.status(), StatusCode::OK, "{}", case["name"]);
        assert_eq!(
            body(response).await,
            json!("User:user_1"),
            "{}",
            case["name"]
        );
    }
    for case in vectors["invalid"].as_array().unwrap() {
        let token = case["token"].as_str().unwrap();
        let (status, error, _) = refusal(send(&app, bearer("/whoever", token)).await).await;
        assert_eq!(
            (status, error.as_str()),
            (StatusCode::UNAUTHORIZED, case["expect"].as_str().unwrap()),
            "{}",
            case["name"]
        );
    }
    assert_eq!(provider.state.stray_fetches.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn jku_and_x5u_headers_are_never_fetched() {
    let provider = IdentityProvider::start(&["rsa-a"]).await;
    let app = stack(&jwks_layer(
        Jwks::from_url(provider.url())
            .cooldown(Duration::ZERO)
            .build()
            .unwrap(),
    ));
    let (alg, key) = private_key("rsa-b");
    let mut header = Header::new(alg);
    header.kid = Some("rsa-b".into());
    header.jku = Some(format!("http://{}/attacker-jwks.json", provider.addr));
    header.x5u = Some(format!("http://{}/attacker-cert.pem", provider.addr));
    let token = jsonwebtoken::encode(&header, &claims("u", json!({})), &key).unwrap();
    assert_eq!(
        refusal(send(&app, bearer("/me", &token)).await).await.1,
        "invalid_token"
    );
    assert_eq!(provider.state.stray_fetches.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_rotated_signing_key_is_picked_up_without_restart_and_the_old_one_dropped() {
    let provider = IdentityProvider::start(&["rsa-a"]).await;
    let layer = jwks_layer(
        Jwks::from_url(provider.url())
            .cooldown(Duration::ZERO)
            .build()
            .unwrap(),
    );
    let app = stack(&layer);
    let old = signed("rsa-a", &claims("u", json!({})));
    assert_eq!(
        send(&app, bearer("/me", &old)).await.status(),
        StatusCode::OK
    );
    assert_eq!(layer.cached_tokens(), 1);
    assert_eq!(provider.fetches(), 1);

    provider.publish(&["rsa-b", "es-a"]);
    let new = signed("rsa-b", &claims("u", json!({})));
    assert_eq!(
        send(&app, bearer("/me", &new)).await.status(),
        StatusCode::OK
    );
    assert_eq!(provider.fetches(), 2, "one refetch for the new kid");
    let es = signed("es-a", &claims("u", json!({})));
    assert_eq!(
        send(&app, bearer("/me", &es)).await.status(),
        StatusCode::OK
    );
    assert_eq!(provider.fetches(), 2, "es-a came with the same fetch");
    // The retired key's token was cached, but the rotation emptied the cache.
    assert_eq!(
        refusal(send(&app, bearer("/me", &old)).await).await.2,
        invalid_token("The token names a key this API does not know.")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_concurrent_requests_with_a_new_kid_cause_one_refetch() {
    let provider = IdentityProvider::start(&["rsa-a"]).await;
    let jwks = Jwks::from_url(provider.url())
        .cooldown(Duration::ZERO)
        .build()
        .unwrap();
    jwks.refresh().await.unwrap();
    let app = stack(&jwks_layer(jwks));
    provider.publish(&["rsa-a", "rsa-b"]);
    let token = signed("rsa-b", &claims("u", json!({})));
    let requests = (0..100).map(|_| {
        let (app, token) = (app.clone(), token.clone());
        tokio::spawn(async move { send(&app, bearer("/me", &token)).await.status() })
    });
    for request in requests.collect::<Vec<_>>() {
        assert_eq!(request.await.unwrap(), StatusCode::OK);
    }
    assert_eq!(
        provider.fetches(),
        2,
        "the start-up fetch and exactly one refetch"
    );
}

#[tokio::test]
async fn unknown_kids_within_the_cooldown_fetch_nothing() {
    let provider = IdentityProvider::start(&["rsa-a"]).await;
    let jwks = Jwks::from_url(provider.url())
        .cooldown(Duration::from_secs(60))
        .build()
        .unwrap();
    let app = stack(&jwks_layer(jwks.clone()));
    let known = signed("rsa-a", &claims("u", json!({})));
    assert_eq!(
        send(&app, bearer("/me", &known)).await.status(),
        StatusCode::OK
    );
    for kid in ["x1", "x2", "x3"] {
        let (alg, key) = private_key("rsa-a");
        let mut header = Header::new(alg);
        header.kid = Some(kid.into());
        let token = jsonwebtoken::encode(&header, &claims("u", json!({})), &key).unwrap();
        assert_eq!(
            refusal(send(&app, bearer("/me", &token)).await).await.1,
            "invalid_token"
        );
    }
    assert_eq!(provider.fetches(), 1, "the cooldown holds back refetches");
    assert_eq!(jwks.fetches(), 1);
}

#[tokio::test]
async fn a_failing_jwks_keeps_the_cached_keys_and_no_keys_at_all_is_503() {
    let provider = IdentityProvider::start(&["rsa-a"]).await;
    let jwks = Jwks::from_url(provider.url())
        .cooldown(Duration::ZERO)
        .build()
        .unwrap();
    let app = stack(&jwks_layer(jwks.clone()));
    let token = signed("rsa-a", &claims("u", json!({})));
    assert_eq!(
        send(&app, bearer("/me", &token)).await.status(),
        StatusCode::OK
    );
    provider.state.status.store(500, Ordering::SeqCst);
    assert!(jwks.refresh().await.is_err());
    let fresh = signed("rsa-a", &claims("u2", json!({})));
    assert_eq!(
        send(&app, bearer("/me", &fresh)).await.status(),
        StatusCode::OK
    );

    let down = IdentityProvider::start(&["rsa-a"]).await;
    down.state.status.store(503, Ordering::SeqCst);
    let never = stack(&jwks_layer(
        Jwks::from_url(down.url())
            .cooldown(Duration::from_secs(30))
            .build()
            .unwrap(),
    ));
    let response = send(&never, bearer("/me", &token)).await;
    assert_eq!(header(&response, "retry-after"), "30");
    assert_eq!(refusal(response).await.1, "auth_unavailable");
    // Within the cooldown the next request is answered without another fetch.
    assert_eq!(
        send(&never, bearer("/me", &token)).await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(down.fetches(), 1);
}

#[tokio::test]
async fn a_request_that_hangs_up_does_not_cancel_the_key_fetch() {
    let provider = IdentityProvider::start(&["rsa-a"]).await;
    provider.state.delay_ms.store(300, Ordering::SeqCst);
    let app = stack(&jwks_layer(
        Jwks::from_url(provider.url())
            .cooldown(Duration::from_secs(60))
            .build()
            .unwrap(),
    ));
    let token = signed("rsa-a", &claims("u", json!({})));
    // The first request starts the fetch and is dropped (its client left) long before it ends.
    let impatient =
        tokio::time::timeout(Duration::from_millis(50), send(&app, bearer("/me", &token))).await;
    assert!(impatient.is_err());
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(provider.fetches(), 1);
    // The fetch finished anyway; within the cooldown the next request finds the keys.
    assert_eq!(
        send(&app, bearer("/me", &token)).await.status(),
        StatusCode::OK
    );
    assert_eq!(provider.fetches(), 1);
}

#[test]
fn stale_keys_are_refreshed_by_requests_when_the_refresher_is_gone() {
    // The warm-up runtime (and the refresher task on it) ends before serving starts.
    let serving = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let provider = serving.block_on(IdentityProvider::start(&["rsa-a"]));
    *provider.state.cache_control.write().unwrap() = "max-age=1".into();
    let jwks = Jwks::from_url(provider.url())
        .ttl_bounds(Duration::ZERO, Duration::from_secs(3600))
        .cooldown(Duration::ZERO)
        .build()
        .unwrap();
    {
        let warm_up = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        warm_up.block_on(jwks.refresh()).unwrap();
    }
    let app = stack(&jwks_layer(jwks));
    provider.publish(&["rsa-b"]);
    serving.block_on(async {
        tokio::time::sleep(Duration::from_millis(1200)).await;
        assert_eq!(provider.fetches(), 1, "no refresher left to fetch");
        // The stale keys still answer this request, and it starts a refresh.
        let old = signed("rsa-a", &claims("u", json!({})));
        assert_eq!(
            send(&app, bearer("/me", &old)).await.status(),
            StatusCode::OK
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(provider.fetches(), 2);
        let new = signed("rsa-b", &claims("u", json!({})));
        assert_eq!(
            send(&app, bearer("/me", &new)).await.status(),
            StatusCode::OK
        );
    });
}

#[tokio::test]
async fn max_age_drives_a_background_refresh() {
    let provider = IdentityProvider::start(&["rsa-a"]).await;
    *provider.state.cache_control.write().unwrap() = "public, max-age=1".into();
    let jwks = Jwks::from_url(provider.url())
        .ttl_bounds(Duration::ZERO, Duration::from_secs(3600))
        .build()
        .unwrap();
    jwks.refresh().await.unwrap();
    provider.publish(&["rsa-b"]);
    // No request asks for anything; the keys are refreshed when max-age runs out.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(provider.fetches() >= 2, "fetches: {}", provider.fetches());
    let app = stack(&jwks_layer(jwks));
    let token = signed("rsa-b", &claims("u", json!({})));
    assert_eq!(
        send(&app, bearer("/me", &token)).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn oidc_discovery_finds_the_keys_and_sets_the_issuer() {
    let provider = IdentityProvider::start(&["es-a"]).await;
    let issuer = provider.state.issuer.read().unwrap().clone();
    let layer = JwtAuthLayer::builder()
        .jwks(Jwks::discover(issuer.clone()).build().unwrap())
        .audience([AUD])
        .build()
        .unwrap();
    let app = stack(&layer);
    let token = signed("es-a", &claims("u", json!({"iss": issuer})));
    assert_eq!(
        send(&app, bearer("/me", &token)).await.status(),
        StatusCode::OK
    );
    let foreign = signed("es-a", &claims("u", json!({})));
    assert_eq!(
        refusal(send(&app, bearer("/me", &foreign)).await).await.2,
        invalid_token("The token was issued by an issuer this API does not trust.")
    );
    assert_eq!(provider.state.discovery_fetches.load(Ordering::SeqCst), 1);

    // A discovery document naming another issuer gives no keys.
    let impostor = IdentityProvider::start(&["es-a"]).await;
    *impostor.state.issuer.write().unwrap() = "https://elsewhere.test".into();
    let base = format!("http://{}", impostor.addr);
    let app = stack(&jwks_layer(Jwks::discover(base).build().unwrap()));
    let token = signed("es-a", &claims("u", json!({})));
    assert_eq!(
        refusal(send(&app, bearer("/me", &token)).await).await.1,
        "auth_unavailable"
    );
    assert_eq!(impostor.fetches(), 0);
}

// ---------- configuration ----------

#[test]
fn unsafe_or_incomplete_configuration_is_refused_at_build_time() {
    let key = || VerifyKey::hmac(Algorithm::HS256, SECRET).unwrap();
    let field = |b: JwtAuthBuilder| b.build().unwrap_err().field.to_string();
    assert_eq!(
        field(JwtAuthLayer::builder().issuer([ISS]).audience([AUD])),
        "jwt.keys"
    );
    assert_eq!(
        field(JwtAuthLayer::builder().key(key()).audience([AUD])),
        "jwt.issuer"
    );
    assert_eq!(
        field(JwtAuthLayer::builder().key(key()).issuer([ISS])),
        "jwt.audience"
    );
    assert_eq!(
        field(hs_builder().algorithms([Algorithm::RS256])),
        "jwt.algorithms"
    );
    assert_eq!(field(hs_builder().realm("a\"b")), "jwt.realm");
    assert!(
        JwtAuthLayer::builder()
            .key(key())
            .any_issuer()
            .any_audience()
            .build()
            .is_ok()
    );
    assert!(
        Jwks::from_url("http://idp.example/jwks.json")
            .build()
            .is_err()
    );
    assert!(
        Jwks::from_url("http://idp.example/jwks.json")
            .allow_http()
            .build()
            .is_ok()
    );
}

// ---------- composed with the rate limiter ----------

#[tokio::test]
async fn the_rate_limiter_counts_token_subjects_and_gives_anonymous_callers_their_tier() {
    use api_policy::rate_limit::{MemoryRateLimitStore, Quota, RateLimitLayer};
    let limiter = RateLimitLayer::builder(MemoryRateLimitStore::new(&MemoryBackend::new()))
        .tier("free", Quota::per_minute(2))
        .tier("pro", Quota::per_minute(100))
        .tier("anonymous", Quota::per_minute(1))
        .default_tier("free")
        .build()
        .unwrap();
    let auth = hs_builder().optional().build().unwrap();
    let app = auth.layer(limiter.layer(router()));
    let send = |request: Request<Body>| {
        let app = app.clone();
        async move {
            app.oneshot(request)
                .await
                .unwrap_or_else(|e: Infallible| match e {})
        }
    };
    let limit_of = |response: &Response<_>| header(response, "x-ratelimit-limit");

    let alice = hs256(&claims("alice", json!({"tier": "free"})));
    let bob = hs256(&claims("bob", json!({"tier": "free"})));
    let pro = hs256(&claims("carol", json!({"tier": "pro"})));
    for _ in 0..2 {
        let response = send(bearer("/whoever", &alice)).await;
        assert_eq!(
            (response.status(), limit_of(&response)),
            (StatusCode::OK, "2".into())
        );
    }
    assert_eq!(
        send(bearer("/whoever", &alice)).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        send(bearer("/whoever", &bob)).await.status(),
        StatusCode::OK,
        "bob has his own bucket"
    );
    assert_eq!(limit_of(&send(bearer("/whoever", &pro)).await), "100");

    let anonymous = || Request::get("/whoever").body(Body::empty()).unwrap();
    let first = send(anonymous()).await;
    assert_eq!(
        (first.status(), limit_of(&first)),
        (StatusCode::OK, "1".into())
    );
    assert_eq!(
        send(anonymous()).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    // A bad token spends no quota: it is refused before the limiter.
    assert_eq!(
        send(bearer("/whoever", "x.y.z")).await.status(),
        StatusCode::UNAUTHORIZED
    );
}
