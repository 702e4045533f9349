//! JWT benchmarks, each beside its baseline measured in the same run:
//! - `decode/*`: a bare `jsonwebtoken::decode` of the token, the floor any JWT layer stands on;
//! - `layer/*`: one request through this layer around a trivial service, for HS256, RS256 and
//!   ES256 with the verified-token cache off (every request verifies its signature), the same
//!   RS256 token with the cache on, and the trivial service alone (`layer/bare`).
//!
//! The layer's own cost is `layer/<alg> - layer/bare`, to be read against `decode/<alg>`.
//!
//! Run: `cargo bench --bench auth --all-features`.

use std::convert::Infallible;
use std::hint::black_box;

use api_policy::auth::{Algorithm, JwtAuthLayer, RawClaims, VerifyKey};
use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use jsonwebtoken::{DecodingKey, EncodingKey, Header, Validation};
use serde_json::{Value, json};
use tower::{Layer, ServiceExt, service_fn};

const ISS: &str = "https://issuer.bench";
const AUD: &str = "bench-api";
const SECRET: &[u8] = b"bench-hmac-secret-of-at-least-32-bytes";

struct Case {
    name: &'static str,
    token: String,
    verify: VerifyKey,
    decoding: DecodingKey,
    algorithm: Algorithm,
}

fn keys() -> Value {
    serde_json::from_str(include_str!("../tests/data/auth-keys.json")).unwrap_or(Value::Null)
}

fn claims() -> Value {
    json!({
        "iss": ISS, "aud": AUD, "sub": "pat_1", "iat": 1_790_000_000u64, "exp": 4_102_444_800u64,
        "role": "patient", "tier": "free", "scope": "patients:read appointments:write",
        "jti": "0b7f7a1e-bench",
    })
}

fn cases() -> Vec<Case> {
    let keys = keys();
    let pem =
        |name: &str, which: &str| keys["keys"][name][which].as_str().unwrap_or("").to_string();
    let sign = |algorithm: Algorithm, key: &EncodingKey| {
        jsonwebtoken::encode(&Header::new(algorithm), &claims(), key).unwrap_or_default()
    };
    let mut cases = Vec::new();
    if let Ok(verify) = VerifyKey::hmac(Algorithm::HS256, SECRET) {
        cases.push(Case {
            name: "hs256",
            token: sign(Algorithm::HS256, &EncodingKey::from_secret(SECRET)),
            verify,
            decoding: DecodingKey::from_secret(SECRET),
            algorithm: Algorithm::HS256,
        });
    }
    let rsa_private = pem("rsa-a", "private_pem");
    let rsa_public = pem("rsa-a", "public_pem");
    if let (Ok(encoding), Ok(verify), Ok(decoding)) = (
        EncodingKey::from_rsa_pem(rsa_private.as_bytes()),
        VerifyKey::rsa_pem(Algorithm::RS256, &rsa_public),
        DecodingKey::from_rsa_pem(rsa_public.as_bytes()),
    ) {
        cases.push(Case {
            name: "rs256",
            token: sign(Algorithm::RS256, &encoding),
            verify,
            decoding,
            algorithm: Algorithm::RS256,
        });
    }
    let ec_private = pem("es-a", "private_pem");
    let ec_public = pem("es-a", "public_pem");
    if let (Ok(encoding), Ok(verify), Ok(decoding)) = (
        EncodingKey::from_ec_pem(ec_private.as_bytes()),
        VerifyKey::ec_pem(Algorithm::ES256, &ec_public),
        DecodingKey::from_ec_pem(ec_public.as_bytes()),
    ) {
        cases.push(Case {
            name: "es256",
            token: sign(Algorithm::ES256, &encoding),
            verify,
            decoding,
            algorithm: Algorithm::ES256,
        });
    }
    cases
}

fn request(token: &str) -> Request<()> {
    let mut request = Request::new(());
    if let Ok(value) = format!("Bearer {token}").parse() {
        request
            .headers_mut()
            .insert(http::header::AUTHORIZATION, value);
    }
    request
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    let hello = service_fn(|_req: Request<()>| async { Ok::<_, Infallible>(Response::new(())) });
    let cases = cases();
    assert_eq!(cases.len(), 3, "every key of the bench loaded");

    let mut group = c.benchmark_group("decode");
    for case in &cases {
        let mut validation = Validation::new(case.algorithm);
        validation.set_issuer(&[ISS]);
        validation.set_audience(&[AUD]);
        group.bench_function(case.name, |b| {
            b.iter(|| {
                let data = jsonwebtoken::decode::<RawClaims>(
                    black_box(&case.token),
                    &case.decoding,
                    &validation,
                );
                black_box(data.is_ok())
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("layer");
    group.bench_function("bare", |b| {
        b.to_async(&runtime).iter(|| {
            let request = request(&cases[0].token);
            let service = hello;
            async move { black_box(service.oneshot(request).await.is_ok()) }
        })
    });
    for (case, cached) in cases.iter().map(|c| (c, false)).chain(
        cases
            .iter()
            .filter(|c| c.name == "rs256")
            .map(|c| (c, true)),
    ) {
        let layer = JwtAuthLayer::builder()
            .key(case.verify.clone())
            .issuer([ISS])
            .audience([AUD])
            .cache_verified(if cached { 10_000 } else { 0 })
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        let service = layer.layer(hello);
        let name = if cached {
            format!("{}_cached", case.name)
        } else {
            case.name.to_string()
        };
        group.bench_function(&name, |b| {
            b.to_async(&runtime).iter(|| {
                let request = request(&case.token);
                let service = service.clone();
                async move {
                    let response = service.oneshot(request).await;
                    black_box(response.is_ok_and(|r| r.status().is_success()))
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
