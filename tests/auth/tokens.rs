//! Keys and tokens: the test keys (`tests/data/auth-keys.json`), claims, and tokens signed,
//! HS256 or by a named key, or forged.

use api_policy::auth::{Algorithm, JwtAuthBuilder, JwtAuthLayer, VerifyKey};
use jsonwebtoken::{EncodingKey, Header};
use serde_json::{Value, json};

pub const ISS: &str = "https://issuer.test";
pub const AUD: &str = "test-api";
pub const SECRET: &[u8] = b"test-hmac-secret-of-at-least-32-bytes";
/// 2100-01-01: far enough that system-clock tests never see it pass.
pub const FAR: u64 = 4_102_444_800;
pub const NOW: u64 = 1_790_000_000;

fn key_file() -> &'static Value {
    static FILE: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    FILE.get_or_init(|| {
        serde_json::from_str(include_str!("../data/auth-keys.json")).expect("auth-keys.json")
    })
}

pub fn test_key(name: &str) -> &'static Value {
    &key_file()["keys"][name]
}

pub fn private_key(name: &str) -> (Algorithm, EncodingKey) {
    let key = test_key(name);
    let pem = key["private_pem"].as_str().unwrap().as_bytes();
    match key["alg"].as_str().unwrap() {
        "RS256" => (Algorithm::RS256, EncodingKey::from_rsa_pem(pem).unwrap()),
        "ES256" => (Algorithm::ES256, EncodingKey::from_ec_pem(pem).unwrap()),
        "EdDSA" => (Algorithm::EdDSA, EncodingKey::from_ed_pem(pem).unwrap()),
        other => panic!("{other}"),
    }
}

pub fn claims(sub: &str, extra: Value) -> Value {
    let mut claims = json!({"iss": ISS, "aud": AUD, "sub": sub, "iat": NOW, "exp": FAR});
    if let (Value::Object(base), Value::Object(extra)) = (&mut claims, extra) {
        base.extend(extra);
    }
    claims
}

pub fn hs256(claims: &Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(SECRET),
    )
    .unwrap()
}

/// A token signed by the named test key, with its name as `kid`.
pub fn signed(key: &str, claims: &Value) -> String {
    let (alg, encoding) = private_key(key);
    let mut header = Header::new(alg);
    header.kid = Some(key.to_string());
    jsonwebtoken::encode(&header, claims, &encoding).unwrap()
}

/// A token with a header of our own making, signed with HMAC-SHA256 over `secret`.
pub fn forged(header: &Value, claims: &Value, secret: &[u8]) -> String {
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

pub fn hs_builder() -> JwtAuthBuilder {
    JwtAuthLayer::builder()
        .key(VerifyKey::hmac(Algorithm::HS256, SECRET).unwrap())
        .issuer([ISS])
        .audience([AUD])
}
