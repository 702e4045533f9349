//! RFC 6750 answers: challenges, invalid requests and invalid tokens (issuer, audience, type,
//! lifetime, algorithms, key confusion), and every algorithm family.

use std::time::Duration;

use api_policy::auth::{Algorithm, JwtAuthLayer, VerifyKey};
use api_policy::clock::ManualClock;
use api_policy::principal::Principal;
use axum::body::Body;
use http::{Request, StatusCode};
use jsonwebtoken::{EncodingKey, Header};
use serde_json::json;

use crate::app::{bearer, body, invalid_token, refusal, send, stack};
use crate::tokens::{
    AUD, FAR, ISS, NOW, SECRET, claims, forged, hs_builder, hs256, signed, test_key,
};

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
