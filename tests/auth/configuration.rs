//! Configuration: what the builder refuses at build time.

use api_policy::auth::{Algorithm, Jwks, JwtAuthBuilder, JwtAuthLayer, VerifyKey};

use crate::tokens::{AUD, ISS, SECRET, hs_builder};

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
