//! JWKS over loopback HTTP: an identity provider served in-process, key rotation, refetch
//! cooldowns, failures, background refresh, and OIDC discovery.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use api_policy::auth::{Algorithm, Jwks, JwtAuthLayer, VerifyKey};
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::routing::get;
use http::{Response, StatusCode};
use jsonwebtoken::Header;
use serde_json::{Value, json};

use crate::app::{bearer, body, header, invalid_token, refusal, send, stack};
use crate::tokens::{AUD, ISS, claims, private_key, signed, test_key};

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
    let vectors: Value = serde_json::from_str(include_str!("../data/jwt-tokens.json")).unwrap();
    let provider = IdentityProvider::start(&[]).await;
    *provider.state.jwks.write().unwrap() =
        serde_json::from_str(include_str!("../data/jwt-jwks.json")).unwrap();
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
