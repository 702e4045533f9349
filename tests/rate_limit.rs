//! The rate-limit layer over real stacks: an axum Router driven in-process, and over TCP.

mod common;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use api_policy::Rejection;
use api_policy::backend::{MemoryBackend, RedisBackend};
use api_policy::body::PolicyBody;
use api_policy::clock::ManualClock;
use api_policy::principal::{KeyExtractor, PeerAddr, Principal, TrustedProxies};
use api_policy::rate_limit::{
    FailurePolicy, MemoryRateLimitStore, Quota, RateLimit, RateLimitLayer, RateLimitStore,
    RedisRateLimitStore, RouteRule, Unidentified,
};
use axum::Router;
use axum::body::Body;
use axum::routing::{get, post};
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use tower::{Layer, ServiceExt};

const T0_SECS: u64 = 1_700_000_000;

fn router() -> Router {
    Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/items", get(|| async { "items" }))
        .route("/search", get(|| async { "results" }))
        .route(
            "/bookings",
            post(|| async { (StatusCode::CREATED, "booked") }),
        )
}

fn keys() -> HashMap<String, Principal> {
    HashMap::from([
        (
            "free-key".to_string(),
            Principal::service("acme").with_tier("free"),
        ),
        (
            "pro-key".to_string(),
            Principal::service("globex").with_tier("pro"),
        ),
    ])
}

fn layer<St: RateLimitStore>(store: St) -> RateLimitLayer<St> {
    RateLimitLayer::builder(store)
        .tier("free", Quota::new(5, Duration::from_secs(5)))
        .tier("pro", Quota::per_minute(100))
        .tier("anonymous", Quota::per_minute(2))
        .route("/health", RouteRule::exempt())
        .route(
            "POST /bookings",
            RouteRule::limit(Quota::per_minute(2)).named("booking"),
        )
        .route("GET /search", RouteRule::cost(3))
        .key_extractor(
            KeyExtractor::new()
                .api_key_header("x-api-key", keys())
                .unwrap()
                .client_ip(TrustedProxies::none()),
        )
        .ietf_headers(true)
        .build()
        .expect("valid config")
}

fn memory_store(clock: &ManualClock) -> MemoryRateLimitStore {
    MemoryRateLimitStore::new(
        &MemoryBackend::builder()
            .clock(clock.clone())
            .build()
            .unwrap(),
    )
}

type Stack<St> = RateLimit<St, Router>;

fn stack<St: RateLimitStore>(layer: &RateLimitLayer<St>) -> Stack<St> {
    layer.layer(router())
}

async fn send<St: RateLimitStore>(
    stack: &Stack<St>,
    request: Request<Body>,
) -> Response<PolicyBody<Body>> {
    stack
        .clone()
        .oneshot(request)
        .await
        .unwrap_or_else(|e: Infallible| match e {})
}

fn get_with_key(path: &str, key: &str) -> Request<Body> {
    Request::get(path)
        .header("x-api-key", key)
        .body(Body::empty())
        .unwrap()
}

fn header<'a, B>(response: &'a Response<B>, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .map_or("<missing>", |v| v.to_str().unwrap())
}

async fn json(response: Response<PolicyBody<Body>>) -> serde_json::Value {
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap()
}

#[tokio::test]
async fn allowed_responses_carry_github_and_ietf_fields() {
    let clock = ManualClock::at_secs(T0_SECS);
    let stack = stack(&layer(memory_store(&clock)));
    let response = send(&stack, get_with_key("/items", "free-key")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-ratelimit-limit"), "5");
    assert_eq!(header(&response, "x-ratelimit-remaining"), "4");
    assert_eq!(header(&response, "x-ratelimit-used"), "1");
    // One unit comes back in 1 s: the bucket is full again at T0 + 1.
    assert_eq!(
        header(&response, "x-ratelimit-reset"),
        (T0_SECS + 1).to_string()
    );
    assert_eq!(header(&response, "ratelimit-policy"), "\"free\";q=5;w=5");
    assert_eq!(header(&response, "ratelimit"), "\"free\";r=4;t=1");
    assert!(response.headers().get("retry-after").is_none());
}

#[tokio::test]
async fn over_the_limit_is_a_429_problem_with_retry_after() {
    let clock = ManualClock::at_secs(T0_SECS);
    let stack = stack(&layer(memory_store(&clock)));
    for _ in 0..5 {
        assert_eq!(
            send(&stack, get_with_key("/items", "free-key"))
                .await
                .status(),
            200
        );
    }
    let response = send(&stack, get_with_key("/items", "free-key")).await;
    assert_eq!(response.status(), 429);
    assert_eq!(
        header(&response, "content-type"),
        "application/problem+json"
    );
    assert_eq!(header(&response, "retry-after"), "1");
    assert_eq!(header(&response, "x-ratelimit-remaining"), "0");
    assert_eq!(
        header(&response, "x-ratelimit-reset"),
        (T0_SECS + 1).to_string()
    );
    assert_eq!(header(&response, "ratelimit"), "\"free\";r=0;t=1");
    assert_eq!(
        response.extensions().get::<Rejection>().unwrap().error,
        "rate_limit_exceeded"
    );
    let body = json(response).await;
    assert_eq!(body["status"], 429);
    assert_eq!(body["error"], "rate_limit_exceeded");
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.contains("5 requests per 5 s") && detail.contains("Retry in 1 s"),
        "{detail}"
    );
    assert!(
        detail.contains("Tue, 14 Nov 2023 22:13:21 GMT"),
        "names the reset time: {detail}"
    );
    // Three seconds later, three units are back (one spent now).
    clock.advance(Duration::from_secs(3));
    let response = send(&stack, get_with_key("/items", "free-key")).await;
    assert_eq!(
        (
            response.status().as_u16(),
            header(&response, "x-ratelimit-remaining")
        ),
        (200, "2")
    );
}

#[tokio::test]
async fn grpc_callers_get_resource_exhausted() {
    let clock = ManualClock::at_secs(T0_SECS);
    let layer = layer(memory_store(&clock));
    let grpc = layer.layer(tower::service_fn(|_req: Request<Body>| async {
        let mut response = Response::new(Body::empty());
        response
            .headers_mut()
            .insert("content-type", "application/grpc".parse().unwrap());
        response
            .headers_mut()
            .insert("grpc-status", "0".parse().unwrap());
        Ok::<_, Infallible>(response)
    }));
    let call = || {
        Request::post("/appointments.v1.Appointments/Get")
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .header("x-api-key", "free-key")
            .body(Body::empty())
            .unwrap()
    };
    for _ in 0..5 {
        let response = grpc.clone().oneshot(call()).await.unwrap();
        assert_eq!(header(&response, "grpc-status"), "0");
    }
    let response = grpc.clone().oneshot(call()).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "content-type"), "application/grpc");
    assert_eq!(header(&response, "grpc-status"), "8");
    assert!(
        header(&response, "grpc-message").starts_with("Rate limit of 5 requests per 5 s exceeded")
    );
}

#[tokio::test]
async fn tiers_routes_costs_and_exemptions() {
    let clock = ManualClock::at_secs(T0_SECS);
    let stack = stack(&layer(memory_store(&clock)));
    // The pro tier has its own quota.
    let response = send(&stack, get_with_key("/items", "pro-key")).await;
    assert_eq!(
        (
            header(&response, "x-ratelimit-limit"),
            header(&response, "x-ratelimit-remaining")
        ),
        ("100", "99")
    );
    // Search costs 3 units of the tier quota.
    let response = send(&stack, get_with_key("/search", "free-key")).await;
    assert_eq!(
        (
            header(&response, "x-ratelimit-remaining"),
            header(&response, "x-ratelimit-used")
        ),
        ("2", "3")
    );
    // Booking has its own bucket, named in the policy field, whatever the tier.
    let book = || {
        Request::post("/bookings")
            .header("x-api-key", "pro-key")
            .body(Body::empty())
            .unwrap()
    };
    let response = send(&stack, book()).await;
    assert_eq!(response.status(), 201);
    assert_eq!(
        header(&response, "ratelimit-policy"),
        "\"booking\";q=2;w=60"
    );
    assert_eq!(send(&stack, book()).await.status(), 201);
    let refused = send(&stack, book()).await;
    assert_eq!(
        (refused.status().as_u16(), header(&refused, "retry-after")),
        (429, "30")
    );
    // ... and spending it left the pro tier bucket alone.
    let response = send(&stack, get_with_key("/items", "pro-key")).await;
    assert_eq!(header(&response, "x-ratelimit-remaining"), "98");
    // Exempt routes pass without headers, however often.
    for _ in 0..20 {
        let response = send(&stack, Request::get("/health").body(Body::empty()).unwrap()).await;
        assert_eq!(response.status(), 200);
        assert!(response.headers().get("x-ratelimit-limit").is_none());
    }
}

#[tokio::test]
async fn a_principal_from_an_earlier_layer_is_counted_by_its_id_and_tier() {
    let clock = ManualClock::at_secs(T0_SECS);
    let stack = stack(&layer(memory_store(&clock)));
    let request = || {
        let mut request = Request::get("/items").body(Body::empty()).unwrap();
        request
            .extensions_mut()
            .insert(Principal::user("pat_1").with_tier("pro"));
        request
    };
    let response = send(&stack, request()).await;
    assert_eq!(header(&response, "x-ratelimit-remaining"), "99");
    let response = send(&stack, request()).await;
    assert_eq!(header(&response, "x-ratelimit-remaining"), "98");
}

#[tokio::test]
async fn unidentified_callers_get_401_or_a_shared_bucket() {
    let clock = ManualClock::at_secs(T0_SECS);
    let strict = RateLimitLayer::builder(memory_store(&clock))
        .tier("free", Quota::per_minute(5))
        .build()
        .unwrap()
        .layer(router());
    let response = send(&strict, Request::get("/items").body(Body::empty()).unwrap()).await;
    assert_eq!(response.status(), 401);
    assert_eq!(
        header(&response, "www-authenticate"),
        "Bearer realm=\"api\""
    );
    assert_eq!(json(response).await["error"], "unidentified_caller");

    let shared = RateLimitLayer::builder(memory_store(&clock))
        .tier("free", Quota::per_minute(5))
        .tier("anonymous", Quota::per_minute(1))
        .on_unidentified(Unidentified::SharedAnonymous)
        .build()
        .unwrap()
        .layer(router());
    let response = send(&shared, Request::get("/items").body(Body::empty()).unwrap()).await;
    assert_eq!(
        (
            response.status().as_u16(),
            header(&response, "x-ratelimit-limit")
        ),
        (200, "1")
    );
    let response = send(&shared, Request::get("/items").body(Body::empty()).unwrap()).await;
    assert_eq!(response.status(), 429);
}

#[tokio::test]
async fn anonymous_callers_are_counted_per_trusted_ip() {
    let clock = ManualClock::at_secs(T0_SECS);
    let proxies = TrustedProxies::new(["10.0.0.0/8"]).unwrap();
    let stack = RateLimitLayer::builder(memory_store(&clock))
        .tier("free", Quota::per_minute(5))
        .tier("anonymous", Quota::per_minute(1))
        .key_extractor(KeyExtractor::new().client_ip(proxies))
        .build()
        .unwrap()
        .layer(router());
    let from = |peer: &str, xff: &str| {
        let mut request = Request::get("/items")
            .header("x-forwarded-for", xff)
            .body(Body::empty())
            .unwrap();
        request
            .extensions_mut()
            .insert(PeerAddr(peer.parse().unwrap()));
        request
    };
    let cases = [
        ("10.0.0.2:5000", "198.51.100.1", 200),
        ("10.0.0.3:5000", "198.51.100.1", 429),
        // Another client behind the same proxy has its own bucket.
        ("10.0.0.2:5000", "198.51.100.2", 200),
        // A direct, untrusted peer cannot pick its key with a forged header.
        ("203.0.113.5:1", "198.51.100.9", 200),
        ("203.0.113.5:2", "198.51.100.10", 429),
    ];
    for (peer, xff, status) in cases {
        let response = send(&stack, from(peer, xff)).await;
        assert_eq!(
            response.status(),
            status,
            "peer {peer}, x-forwarded-for {xff}"
        );
    }
}

/// Over a real socket: axum's ConnectInfo gives the peer, and the limiter reads it.
#[tokio::test]
async fn over_tcp_the_peer_address_keys_anonymous_callers() {
    let clock = ManualClock::at_secs(T0_SECS);
    let layer = RateLimitLayer::builder(memory_store(&clock))
        .tier("anonymous", Quota::per_minute(2))
        .key_extractor(KeyExtractor::new().client_ip(TrustedProxies::none()))
        .build()
        .unwrap();
    let app = router().layer(
        tower::ServiceBuilder::new()
            .map_response(|r: Response<PolicyBody<Body>>| r.map(Body::new))
            .layer(layer),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(raw_get(addr, "/items").await);
    }
    server.abort();
    assert_eq!(statuses, [200, 200, 429]);
}

async fn raw_get(addr: SocketAddr, path: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// 200 concurrent requests through the whole stack against a quota of 50.
async fn exactly_the_quota_under_concurrency<St: RateLimitStore>(
    stacks: &[Stack<St>],
) -> (usize, usize) {
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let stack = stacks[i % stacks.len()].clone();
            tokio::spawn(async move {
                send(&stack, get_with_key("/items", "free-key"))
                    .await
                    .status()
            })
        })
        .collect();
    let (mut ok, mut limited) = (0, 0);
    for task in tasks {
        match task.await.unwrap() {
            StatusCode::OK => ok += 1,
            StatusCode::TOO_MANY_REQUESTS => limited += 1,
            other => panic!("unexpected {other}"),
        }
    }
    (ok, limited)
}

fn fifty_per_hour<St: RateLimitStore>(store: St) -> Stack<St> {
    RateLimitLayer::builder(store)
        .tier("free", Quota::per_hour(50))
        .key_extractor(
            KeyExtractor::new()
                .api_key_header("x-api-key", keys())
                .unwrap(),
        )
        .build()
        .unwrap()
        .layer(router())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_admits_exactly_50_of_200_concurrent() {
    let stack = fifty_per_hour(MemoryRateLimitStore::new(&MemoryBackend::new()));
    assert_eq!(
        exactly_the_quota_under_concurrency(&[stack]).await,
        (50, 150)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_admits_exactly_50_of_200_concurrent_across_two_stacks() {
    let Some(url) = common::redis_or_skip("two_stacks").await else {
        return;
    };
    let prefix = common::unique_prefix("two_stacks");
    // Two separate backends (two connections), as two app instances would have.
    let one = RedisBackend::builder(url.clone())
        .prefix(prefix.clone())
        .build()
        .unwrap();
    let two = RedisBackend::builder(url).prefix(prefix).build().unwrap();
    let stacks = [
        fifty_per_hour(RedisRateLimitStore::new(&one)),
        fifty_per_hour(RedisRateLimitStore::new(&two)),
    ];
    assert_eq!(
        exactly_the_quota_under_concurrency(&stacks).await,
        (50, 150)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_admits_exactly_50_of_200_concurrent_on_one_stack() {
    let Some(url) = common::redis_or_skip("one_stack").await else {
        return;
    };
    let backend = RedisBackend::builder(url)
        .prefix(common::unique_prefix("one_stack"))
        .build()
        .unwrap();
    let stack = fifty_per_hour(RedisRateLimitStore::new(&backend));
    assert_eq!(
        exactly_the_quota_under_concurrency(&[stack]).await,
        (50, 150)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_redis_follows_the_failure_policy_and_recovers() {
    if common::redis_or_skip("unreachable").await.is_none() {
        return;
    }
    let port = common::free_port();
    let url = format!("redis://127.0.0.1:{port}");
    let backend = RedisBackend::builder(url.clone())
        .prefix(common::unique_prefix("unreachable"))
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let open_layer = RateLimitLayer::builder(RedisRateLimitStore::new(&backend))
        .tier("free", Quota::per_minute(10))
        .key_extractor(
            KeyExtractor::new()
                .api_key_header("x-api-key", keys())
                .unwrap(),
        )
        .build()
        .unwrap();
    let open = open_layer.layer(router());
    let closed = RateLimitLayer::builder(RedisRateLimitStore::new(&backend))
        .tier("free", Quota::per_minute(10))
        .key_extractor(
            KeyExtractor::new()
                .api_key_header("x-api-key", keys())
                .unwrap(),
        )
        .on_store_error(FailurePolicy::Closed)
        .build()
        .unwrap()
        .layer(router());

    let started = std::time::Instant::now();
    let response = send(&open, get_with_key("/items", "free-key")).await;
    assert_eq!(response.status(), 200, "fails open");
    assert!(
        response.headers().get("x-ratelimit-limit").is_none(),
        "no decision, no headers"
    );
    assert_eq!(open_layer.store_failures(), 1);
    let response = send(&closed, get_with_key("/items", "free-key")).await;
    assert_eq!(response.status(), 503, "fails closed");
    assert_eq!(header(&response, "retry-after"), "1");
    assert_eq!(json(response).await["error"], "rate_limit_unavailable");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "bounded by the timeout: {:?}",
        started.elapsed()
    );

    // Redis comes up on that port; the same stacks serve again with decisions.
    let Some(_redis) = common::RedisProcess::start(port).await else {
        return;
    };
    let back = std::time::Instant::now();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let response = send(&closed, get_with_key("/items", "free-key")).await;
        if response.status() == 200 {
            assert!(response.headers().get("x-ratelimit-remaining").is_some());
            eprintln!(
                "served with decisions {:?} after Redis answered",
                back.elapsed()
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the stack did not recover within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let response = send(&open, get_with_key("/items", "free-key")).await;
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("x-ratelimit-remaining").is_some());
}

#[tokio::test]
async fn bad_configuration_is_refused_at_build_time() {
    let store = || MemoryRateLimitStore::new(&MemoryBackend::new());
    let err = RateLimitLayer::builder(store()).build().unwrap_err();
    assert_eq!(err.field, "rate_limit.tiers");
    let err = RateLimitLayer::builder(store())
        .tier("free", Quota::per_minute(0))
        .build()
        .unwrap_err();
    assert_eq!(err.field, "rate_limit.tiers.free");
    let err = RateLimitLayer::builder(store())
        .tier("free", Quota::per_minute(5))
        .default_tier("gold")
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("gold"), "{err}");
    let err = RateLimitLayer::builder(store())
        .tier("free", Quota::per_minute(5))
        .route("/a/{", RouteRule::exempt())
        .build()
        .unwrap_err();
    assert_eq!(err.field, "route");
}
