//! The composed stack: `PolicyStack` over a real axum app, built from TOML configurations on
//! memory and on a real Redis; broken configurations refused with the entry named; the demo
//! server run from a configuration file.

mod common;

use api_policy::backend::MemoryBackend;
use api_policy::stack::{BackendKind, StackBackend, StackConfig};
use axum::Router;
use axum::body::Body;
use axum::extract::Path;
use axum::routing::{get, post};
use common::{DEMO_AUDIENCE, DEMO_ISSUER, DEMO_SECRET, answer, hs256_token};
use http::{Request, StatusCode};

/// A configuration with every section, as an operator would write it.
fn full_config(audit_log: &std::path::Path, anonymous_quota: &str) -> StackConfig {
    let text = format!(
        r#"
[callers]
api_key_header = "x-api-key"
client_ip = true
[[callers.api_keys]]
key = "k_pro"
id = "acme"
tier = "pro"

[jwt]
issuer = ["{DEMO_ISSUER}"]
audience = ["{DEMO_AUDIENCE}"]
hs256_secret = "{secret}"
optional = true
[[jwt.routes]]
route = "/patients/*"
any_role = ["doctor"]

[rate_limit]
default_tier = "free"
ietf_headers = true
[rate_limit.tiers]
free = "5/min"
pro = "100/min"
anonymous = "{anonymous_quota}"

[versioning]
default = "2"
path_prefix = true
[[versioning.versions]]
version = "1"
status = "deprecated"
deprecated_at = "2026-07-01"
sunset = "2099-12-31T23:59:59Z"
link = "/docs/v2"
[[versioning.versions]]
version = "2"

[idempotency]
require = ["POST /v2/orders"]

[[conditional.resources]]
route = "/v2/things/{{id}}"
cache_control = "private, max-age=60"

[audit]
log = "{log}"
[[audit.routes]]
route = "/patients/{{id}}"
subject = "id"
"#,
        secret = String::from_utf8_lossy(DEMO_SECRET),
        log = audit_log.display(),
    );
    toml::from_str(&text).expect("the configuration parses")
}

fn app<B: StackBackend>(config: &StackConfig, backend: &B) -> Router {
    let stack = config.build(backend).expect("the configuration builds");
    Router::new()
        .route(
            "/patients/{id}",
            get(|Path(id): Path<String>| async move { format!("{{\"patient\":\"{id}\"}}") }),
        )
        .route("/v1/things/{id}", get(|| async { "thing v1" }))
        .route("/v2/things/{id}", get(|| async { "thing v2" }))
        .route(
            "/v2/orders",
            post(|| async { (StatusCode::CREATED, "ordered") }),
        )
        .layer(stack)
}

fn audit_log(test: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "{}{}",
        common::unique_prefix(test).replace(':', "-"),
        "audit"
    ));
    dir.join("phi.log")
}

fn get_req(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).expect("request")
}

/// Every configured policy acts on one request, in the recommended order.
async fn every_layer_acts(app: Router, log: &std::path::Path) {
    let doctor = hs256_token(DEMO_SECRET, DEMO_ISSUER, DEMO_AUDIENCE, "dr_1", "doctor");
    let patient = hs256_token(DEMO_SECRET, DEMO_ISSUER, DEMO_AUDIENCE, "pat_1", "patient");

    // Auth, rate limit (per principal, free tier), versioning, conditional (ETag) and audit.
    let ok = answer(
        &app,
        Request::get("/patients/pat_9")
            .header("authorization", format!("Bearer {doctor}"))
            .body(Body::empty())
            .expect("request"),
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    assert_eq!(ok.header("x-ratelimit-limit"), ["5"]);
    assert_eq!(ok.header("ratelimit-policy"), ["\"free\";q=5;w=60"]);
    assert_eq!(ok.header("api-version"), ["v2"]);
    assert!(ok.etag().starts_with('"'), "{:?}", ok.headers);
    assert_eq!(ok.header("x-request-id").len(), 1);

    // A refusal by auth spends no quota and is audited.
    let denied = answer(
        &app,
        Request::get("/patients/pat_9")
            .header("authorization", format!("Bearer {patient}"))
            .body(Body::empty())
            .expect("request"),
    )
    .await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    assert!(denied.header("x-ratelimit-limit").is_empty());

    // The deprecated version announces itself.
    let old = answer(&app, get_req("/v1/things/a")).await;
    assert_eq!(old.status, StatusCode::OK);
    assert_eq!(old.header("deprecation"), ["@1782864000"]);
    assert_eq!(old.header("x-ratelimit-limit"), ["4"], "the anonymous tier");

    // Conditional requests on the configured resource.
    let thing = answer(&app, get_req("/v2/things/a")).await;
    assert_eq!(thing.header("cache-control"), ["private, max-age=60"]);
    let again = answer(
        &app,
        Request::get("/v2/things/a")
            .header("if-none-match", thing.etag())
            .body(Body::empty())
            .expect("request"),
    )
    .await;
    assert_eq!(again.status, StatusCode::NOT_MODIFIED);

    // Idempotency keys required where configured; an API key names a pro caller.
    let order = |key: Option<&str>| {
        let mut request = Request::post("/v2/orders").header("x-api-key", "k_pro");
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        request.body(Body::from("{}")).expect("request")
    };
    let missing = answer(&app, order(None)).await;
    assert_eq!(missing.status, StatusCode::BAD_REQUEST);
    assert_eq!(missing.error(), "idempotency_key_missing");
    let first = answer(&app, order(Some("o-1"))).await;
    assert_eq!(first.status, StatusCode::CREATED);
    assert_eq!(first.header("x-ratelimit-limit"), ["100"]);
    let replay = answer(&app, order(Some("o-1"))).await;
    assert_eq!(replay.status, StatusCode::CREATED);
    assert!(replay.replayed());

    // The anonymous quota (4/min: three spent above) runs out: 429 from the configured limit.
    let fourth = answer(&app, get_req("/v1/things/b")).await;
    assert_eq!(fourth.status, StatusCode::OK);
    let over = answer(&app, get_req("/v1/things/c")).await;
    assert_eq!(over.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(over.error(), "rate_limit_exceeded");

    // The audit log holds the two PHI requests, the 403 included, and only those.
    let text = std::fs::read_to_string(log).expect("the audit log");
    let statuses: Vec<u64> = text
        .lines()
        .map(|line| {
            let record: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
            record["record"]["status"].as_u64().expect("a status")
        })
        .collect();
    assert_eq!(statuses, [200, 403], "{text}");
}

#[tokio::test]
async fn a_configured_stack_runs_every_policy_on_memory() {
    let log = audit_log("stack-memory");
    let config = full_config(&log, "4/min");
    every_layer_acts(
        app(&config, &config.backend.memory().expect("memory")),
        &log,
    )
    .await;
}

#[tokio::test]
async fn a_configured_stack_runs_every_policy_on_redis() {
    let Some(url) = common::redis_or_skip("a_configured_stack_runs_every_policy_on_redis").await
    else {
        return;
    };
    let log = audit_log("stack-redis");
    let mut config = full_config(&log, "4/min");
    config.backend.kind = BackendKind::Redis;
    config.backend.url = Some(url);
    config.backend.prefix = Some(common::unique_prefix("stack"));
    let backend = config.backend.redis().expect("redis backend");
    every_layer_acts(app(&config, &backend), &log).await;
}

/// The backend the `[backend]` section names, built by the library (`BackendConfig::build`):
/// the app never matches on the kind, and every layer acts on either.
#[tokio::test]
async fn a_configured_stack_runs_on_the_backend_its_section_names() {
    let log = audit_log("stack-any-memory");
    let config = full_config(&log, "4/min");
    let backend = config.backend.build().expect("memory backend");
    assert_eq!(backend.name(), "memory");
    every_layer_acts(app(&config, &backend), &log).await;

    let Some(url) =
        common::redis_or_skip("a_configured_stack_runs_on_the_backend_its_section_names").await
    else {
        return;
    };
    let log = audit_log("stack-any-redis");
    let mut config = full_config(&log, "4/min");
    config.backend.kind = BackendKind::Redis;
    config.backend.url = Some(url);
    config.backend.prefix = Some(common::unique_prefix("stack-any"));
    let backend = config.backend.build().expect("redis backend");
    assert_eq!(backend.name(), "redis");
    every_layer_acts(app(&config, &backend), &log).await;
}

/// The same configuration on a Redis Cluster, named by `backend.cluster`.
#[cfg(feature = "cluster")]
#[tokio::test]
async fn a_configured_stack_runs_every_policy_on_a_redis_cluster() {
    let Some(nodes) = common::redis_cluster_or_skip("stack_on_cluster").await else {
        return;
    };
    let log = audit_log("stack-cluster");
    let mut config = full_config(&log, "4/min");
    config.backend.kind = BackendKind::Redis;
    config.backend.cluster = Some(nodes);
    config.backend.prefix = Some(common::unique_prefix("stack"));
    let backend = config.backend.redis().expect("redis cluster backend");
    every_layer_acts(app(&config, &backend), &log).await;
}

#[tokio::test]
async fn sections_left_out_leave_their_slots_empty() {
    let config: StackConfig = toml::from_str(
        r#"
        [idempotency]
        require = ["POST /v2/orders"]
        "#,
    )
    .expect("parses");
    let stack = config.build(&MemoryBackend::new()).expect("builds");
    assert!(stack.audit_layer().get().is_none());
    assert!(stack.auth_layer().get().is_none());
    assert!(stack.rate_limit_layer().get().is_none());
    assert!(stack.versioning_layer().get().is_none());
    assert!(stack.conditional_layer().get().is_none());
    let app = Router::new()
        .route(
            "/v2/orders",
            post(|| async { (StatusCode::CREATED, "ordered") }),
        )
        .route("/v2/things/{id}", get(|| async { "thing" }))
        .layer(stack);
    let missing = answer(
        &app,
        Request::post("/v2/orders")
            .body(Body::empty())
            .expect("request"),
    )
    .await;
    assert_eq!(missing.status, StatusCode::BAD_REQUEST);
    let plain = answer(&app, get_req("/v2/things/a")).await;
    assert_eq!(plain.status, StatusCode::OK);
    assert_eq!(plain.body, "thing");
    assert!(plain.header("x-ratelimit-limit").is_empty());
    assert!(plain.header("etag").is_empty());
    assert!(plain.header("api-version").is_empty());
}

/// A renderer set on the stack renders every layer's refusals, a layer's own renderer wins
/// for that layer, and answers that are not refusals are left alone.
#[tokio::test]
async fn the_stacks_renderer_renders_every_layers_refusals_but_a_layers_own() {
    use api_policy::idempotency::{IdempotencyLayer, MemoryIdempotencyStore};
    use api_policy::rate_limit::{MemoryRateLimitStore, Quota, RateLimitLayer, Unidentified};
    use api_policy::rejection::{Rejection, RejectionContext};
    use api_policy::stack::PolicyStack;
    let house = |rejection: &Rejection, _: &RejectionContext<'_>| {
        http::Response::builder()
            .status(rejection.status)
            .header("content-type", "text/plain")
            .body(bytes::Bytes::from(format!(
                "house style: {}",
                rejection.error
            )))
            .expect("response")
    };
    let backend = MemoryBackend::new();
    let limits = RateLimitLayer::builder(MemoryRateLimitStore::new(&backend))
        .tier("anonymous", Quota::per_minute(1))
        .on_unidentified(Unidentified::SharedAnonymous)
        .build()
        .expect("rate limit");
    let own = |rejection: &Rejection, _: &RejectionContext<'_>| {
        http::Response::builder()
            .status(rejection.status)
            .body(bytes::Bytes::from(format!("its own: {}", rejection.error)))
            .expect("response")
    };
    let idempotency = IdempotencyLayer::builder(MemoryIdempotencyStore::new(&backend))
        .require("POST /v2/orders")
        .renderer(own)
        .build()
        .expect("idempotency");
    let stack = PolicyStack::new()
        .rate_limit(limits)
        .idempotency(idempotency)
        .renderer(house);
    let app = Router::new()
        .route(
            "/v2/orders",
            post(|| async { "ordered" }).get(|| async { "orders" }),
        )
        .layer(stack);
    let first = answer(&app, get_req("/v2/orders")).await;
    assert_eq!(
        (first.status, first.body.as_str()),
        (StatusCode::OK, "orders")
    );
    let limited = answer(&app, get_req("/v2/orders")).await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.body, "house style: rate_limit_exceeded");
    assert_eq!(limited.header("content-type"), ["text/plain"]);
    let app_with_room = Router::new()
        .route("/v2/orders", post(|| async { "ordered" }))
        .layer(
            PolicyStack::new()
                .idempotency(
                    IdempotencyLayer::builder(MemoryIdempotencyStore::new(&backend))
                        .require("POST /v2/orders")
                        .renderer(own)
                        .build()
                        .expect("idempotency"),
                )
                .renderer(house),
        );
    let missing = answer(
        &app_with_room,
        Request::post("/v2/orders")
            .body(Body::empty())
            .expect("request"),
    )
    .await;
    assert_eq!(missing.status, StatusCode::BAD_REQUEST);
    assert_eq!(missing.body, "its own: idempotency_key_missing");
}

/// The stack's renderer reaches a handler's own refusal through `Access` too.
#[tokio::test]
async fn the_stacks_renderer_renders_a_handlers_access_refusal() {
    use api_policy::auth::{Access, Algorithm, JwtAuthLayer, VerifyKey};
    use api_policy::rejection::{Rejection, RejectionContext};
    use api_policy::stack::PolicyStack;
    let auth = JwtAuthLayer::builder()
        .key(VerifyKey::hmac(Algorithm::HS256, DEMO_SECRET).expect("key"))
        .issuer([DEMO_ISSUER])
        .audience([DEMO_AUDIENCE])
        .build()
        .expect("auth");
    let house = |rejection: &Rejection, _: &RejectionContext<'_>| {
        http::Response::builder()
            .status(rejection.status)
            .body(bytes::Bytes::from(format!(
                "house style: {}",
                rejection.error
            )))
            .expect("response")
    };
    let app =
        Router::new()
            .route(
                "/admin/report",
                get(|access: Access| async move {
                    access.require_any_role(&["admin"]).map(|()| "report")
                }),
            )
            .layer(PolicyStack::new().auth(auth).renderer(house));
    let token = hs256_token(DEMO_SECRET, DEMO_ISSUER, DEMO_AUDIENCE, "pat_1", "patient");
    let denied = answer(
        &app,
        Request::get("/admin/report")
            .header("authorization", format!("Bearer {token}"))
            .body(Body::empty())
            .expect("request"),
    )
    .await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    assert!(denied.body.starts_with("house style: "), "{}", denied.body);
}

#[test]
fn the_demo_configuration_fills_every_slot() {
    let mut config: StackConfig =
        toml::from_str(include_str!("../examples/server.toml")).expect("server.toml parses");
    let log = audit_log("demo-config");
    config.audit.as_mut().expect("an audit section").log = log;
    let stack = config
        .build(&MemoryBackend::new())
        .expect("server.toml builds");
    assert!(stack.audit_layer().get().is_some());
    assert!(stack.auth_layer().get().is_some());
    assert!(stack.rate_limit_layer().get().is_some());
    assert!(stack.versioning_layer().get().is_some());
    assert!(stack.idempotency_layer().get().is_some());
    assert!(stack.conditional_layer().get().is_some());
}

/// Each broken configuration is refused, naming its entry.
#[test]
fn broken_configurations_name_the_entry_at_fault() {
    let log = audit_log("broken").display().to_string();
    let secret = String::from_utf8_lossy(DEMO_SECRET).into_owned();
    let jwt = "[jwt]\nissuer = [\"i\"]\naudience = [\"a\"]\n".to_string();
    let cases: Vec<(String, &str, &str)> = vec![
        (
            "[rate_limit]\ntiers = { free = \"60/fortnight\" }".into(),
            "rate_limit.tiers.free",
            "N/UNIT",
        ),
        (
            "[rate_limit]\ntiers = { free = \"1/s\", pro = \"2/s\" }".into(),
            "rate_limit.default_tier",
            "several tiers",
        ),
        (
            "[rate_limit]\ntiers = { free = \"1/s\" }\ndefault_tier = \"gold\"".into(),
            "rate_limit.default_tier",
            "`gold` is not a configured tier",
        ),
        ("[rate_limit]\ntiers = {}".into(), "rate_limit.tiers", "at least one tier"),
        (
            "[rate_limit]\ntiers = { free = \"1/s\" }\n[[rate_limit.routes]]\nroute = \"/x\"\nlimit = \"1/s\"\nexempt = true".into(),
            "rate_limit.routes[0]",
            "exactly one of",
        ),
        (
            "[rate_limit]\ntiers = { free = \"1/s\" }\n[[rate_limit.routes]]\nroute = \"/x\"\nlimit = \"0/s\"".into(),
            "rate_limit.routes[0].limit",
            "0/s",
        ),
        (
            "[versioning]\ndefault = \"two\"\nversions = []".into(),
            "versioning.default",
            "not a version",
        ),
        (
            "[versioning]\ndefault = \"2\"\n[[versioning.versions]]\nversion = \"1\"\nstatus = \"deprecated\"\ndeprecated_at = \"soon\"\n[[versioning.versions]]\nversion = \"2\"".into(),
            "versioning.versions[0].deprecated_at",
            "not a date",
        ),
        (
            "[versioning]\ndefault = \"2\"\n[[versioning.versions]]\nversion = \"1\"\nstatus = \"deprecated\"\ndeprecated_at = \"2026-07-01\"\nsunset = \"2026-01-01\"\n[[versioning.versions]]\nversion = \"2\"".into(),
            "versioning.versions[0].sunset",
            "earlier than",
        ),
        (
            "[versioning]\ndefault = \"2\"\n[[versioning.versions]]\nversion = \"2\"\nsunset = \"2026-01-01\"".into(),
            "versioning.versions[0]",
            "status = \"deprecated\"",
        ),
        (format!("{jwt}hs256_secret = \"short\""), "jwt.hs256_secret", "32"),
        (
            format!("{jwt}hs256_secret_env = \"API_POLICY_TEST_NEVER_SET\""),
            "jwt.hs256_secret_env",
            "API_POLICY_TEST_NEVER_SET",
        ),
        (
            format!("[jwt]\naudience = [\"a\"]\nhs256_secret = \"{secret}\""),
            "jwt.issuer",
            "issuer",
        ),
        (jwt.clone(), "jwt", "no keys"),
        (
            format!("{jwt}[[jwt.pem_keys]]\npath = \"/nonexistent/key.pem\"\nalgorithm = \"RS256\""),
            "jwt.pem_keys[0].path",
            "cannot read",
        ),
        (
            format!("{jwt}[[jwt.pem_keys]]\npath = \"/nonexistent/key.pem\"\nalgorithm = \"RS257\""),
            "jwt.pem_keys[0].algorithm",
            "RS257",
        ),
        (
            "[idempotency]\nmethods = [\"PO ST\"]".into(),
            "idempotency.methods[0]",
            "not an HTTP method",
        ),
        (
            "[conditional]\nmax_body_bytes = 0".into(),
            "conditional.max_body_bytes",
            "more than zero",
        ),
        (
            "[audit]\nlog = \"/proc/api-policy-nowhere/x.log\"\n[[audit.routes]]\nroute = \"/p/{id}\"".into(),
            "audit.log",
            "cannot open",
        ),
        (format!("[audit]\nlog = \"{log}\"\nroutes = []"), "audit.routes", "at least one"),
        (
            format!("[audit]\nlog = \"{log}\"\nbuffer = 10\n[[audit.routes]]\nroute = \"/p\""),
            "audit.durability",
            "buffered",
        ),
        (
            "[callers]\napi_keys = [{ key = \"k\", id = \"a\" }]".into(),
            "callers.api_key_header",
            "header",
        ),
        (
            "[callers]\napi_key_header = \"x-api-key\"\napi_keys = [{ id = \"a\" }]".into(),
            "callers.api_keys[0]",
            "exactly one of",
        ),
        (
            "[callers]\ntrusted_proxies = [\"10.0.0.300\"]".into(),
            "callers.trusted_proxies",
            "10.0.0.300",
        ),
        // Each entry an operator can get wrong is named by its place in the file.
        (
            "[rate_limit]\ntiers = { free = \"1/s\" }\n[[rate_limit.routes]]\nroute = \"orders\"\nexempt = true".into(),
            "rate_limit.routes[0].route",
            "must start with `/`",
        ),
        (
            "[rate_limit]\ntiers = { free = \"1/s\" }\n[[rate_limit.routes]]\nroute = \"/x\"\nlimit = \"1/s\"\nname = \"\"".into(),
            "rate_limit.routes[0].name",
            "empty",
        ),
        (
            "[rate_limit]\ntiers = { free = \"1/s\" }\n[[rate_limit.routes]]\nroute = \"/x\"\nlimit = \"1/s\"\ntiers = { gold = \"2/s\" }".into(),
            "rate_limit.routes[0].tiers.gold",
            "not one of rate_limit.tiers",
        ),
        (
            "[rate_limit]\ntiers = { free = \"1/s\" }\n[[rate_limit.routes]]\nroute = \"post /x\"\nexempt = true".into(),
            "rate_limit.routes[0].route",
            "upper case",
        ),
        (
            "[idempotency]\nlease_secs = 0".into(),
            "idempotency.lease_secs",
            "more than zero",
        ),
        (
            "[idempotency]\nmethods = [\"post\"]".into(),
            "idempotency.methods[0]",
            "upper case",
        ),
        (
            "[idempotency]\nrequire = [\"PUT /orders/{id}\"]".into(),
            "idempotency.require[0]",
            "not one of the methods covered",
        ),
        (
            "[idempotency]\nignore = [\"/a/{\"]".into(),
            "idempotency.ignore[0]",
            "unclosed",
        ),
        (
            "[conditional]\nvalidator_ttl_secs = 0".into(),
            "conditional.validator_ttl_secs",
            "more than zero",
        ),
        (
            "[[conditional.resources]]\nroute = \"GET /things/{id}\"".into(),
            "conditional.resources[0].route",
            "a resource is a path",
        ),
        (
            format!("{jwt}hs256_secret = \"{secret}\"\n[[jwt.routes]]\nroute = \"/p/*\"\nanonymous = true\nany_role = [\"doctor\"]"),
            "jwt.routes[0]",
            "anonymous",
        ),
        (
            format!("[jwt]\nissuer = [\"i\"]\nhs256_secret = \"{secret}\""),
            "jwt.audience",
            "audience",
        ),
        (
            format!("[audit]\nlog = \"{log}\"\n[[audit.routes]]\nroute = \"/patients/{{id}}\"\nsubject = \"patient_id\""),
            "audit.routes[0].subject",
            "not a parameter",
        ),
        (
            format!("[audit]\nlog = \"{log}\"\ndurability = \"buffered\"\nbuffer = 0\n[[audit.routes]]\nroute = \"/p\""),
            "audit.buffer",
            "1 to",
        ),
        (
            format!("[audit]\nlog = \"{log}\"\ndurability = \"buffered\"\nbuffer = 9223372036854775807\n[[audit.routes]]\nroute = \"/p\""),
            "audit.buffer",
            "1 to",
        ),
        (
            format!("[audit]\nlog = \"{log}\"\ndurability = \"buffered\"\ncommit_interval_ms = 5000\n[[audit.routes]]\nroute = \"/p\""),
            "audit.commit_interval_ms",
            "at most 1000 ms",
        ),
        (
            format!("[audit]\nlog = \"{log}\"\ncommit_interval_ms = 5\n[[audit.routes]]\nroute = \"/p\""),
            "audit.durability",
            "need durability = \"buffered\"",
        ),
        (
            "[callers]\napi_key_header = \"x-api-key\"\napi_keys = [{ key = \"k\", id = \"a\" }, { key = \"k\", id = \"b\" }]".into(),
            "callers.api_keys[1]",
            "same key",
        ),
        (
            "[callers]\napi_key_header = \"x-api-key\"\napi_keys = [{ key = \"k 1\", id = \"a\" }]".into(),
            "callers.api_keys[0]",
            "visible ASCII",
        ),
        (
            "[callers]\napi_key_header = \"x-api-key\"\napi_keys = [{ key = \"k\", id = \"a\", tier = \"Pro\" }]\n[rate_limit]\ntiers = { pro = \"1/s\" }".into(),
            "callers.api_keys[0].tier",
            "`Pro` is not one of rate_limit.tiers",
        ),
        (
            "[versioning]\ndefault = \"2\"\n[[versioning.versions]]\nversion = \"2\"\n[[versioning.versions]]\nversion = \"v2\"".into(),
            "versioning.versions[1].version",
            "twice",
        ),
        (
            "[versioning]\ndefault = \"2\"\n[[versioning.versions]]\nversion = \"2\"\nrevision_of = 1".into(),
            "versioning.versions[0].revision_of",
            "dated version",
        ),
        (
            "[versioning]\ndefault = \"2\"\n[[versioning.versions]]\nversion = \"2\"\n[[versioning.versions]]\nversion = \"2024-04-10\"\nrevision_of = 3".into(),
            "versioning.versions[1].revision_of",
            "version 3",
        ),
        (
            "[versioning]\ndefault = \"2\"\n[[versioning.versions]]\nversion = \"1\"\nstatus = \"deprecated\"\ndeprecated_at = \"2026-07-01\"\nenforce_sunset = true\n[[versioning.versions]]\nversion = \"2\"".into(),
            "versioning.versions[0].enforce_sunset",
            "no `sunset`",
        ),
        (
            "[versioning]\ndefault = \"2\"\n[[versioning.versions]]\nversion = \"2\"\nlink = \"/docs\"".into(),
            "versioning.versions[0]",
            "`link`",
        ),
    ];
    for (text, field, reason) in cases {
        let config: StackConfig = toml::from_str(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
        let error = match config.build(&MemoryBackend::new()) {
            Ok(_) => panic!("accepted:\n{text}"),
            Err(error) => error,
        };
        assert_eq!(error.field, field, "{text}\n{error}");
        assert!(error.reason.contains(reason), "{text}\n{error}");
        assert!(error.to_string().contains(&*error.field), "{error}");
    }

    for (text, field) in [
        ("[backend]\nkind = \"redis\"", "backend.url"),
        (
            "[backend]\nkind = \"redis\"\nurl = \"redis://127.0.0.1\"\ntimeout_ms = 0",
            "backend.timeout_ms",
        ),
        (
            "[backend]\nkind = \"redis\"\nurl = \"redis://127.0.0.1\"\nprefix = \"a{b}\"",
            "backend.prefix",
        ),
        (
            "[backend]\nkind = \"redis\"\nurl = \"redis://127.0.0.1\"\nmax_keys = 10",
            "backend.max_keys",
        ),
        (
            "[backend]\nkind = \"redis\"\nurl = \"redis://127.0.0.1\"\nmax_bytes = 1048576",
            "backend.max_bytes",
        ),
        (
            "[backend]\nkind = \"redis\"\nurl = \"redis://127.0.0.1\"\ncluster = [\"redis://127.0.0.1:7000\"]",
            "backend.cluster",
        ),
        (
            "[backend]\nkind = \"redis\"\ncluster = []",
            "backend.cluster",
        ),
        (
            "[backend]\nkind = \"redis\"\ncluster = [\"redis://127.0.0.1:7000\", \"nonsense\"]",
            "backend.cluster",
        ),
    ] {
        let config: StackConfig = toml::from_str(text).expect("parses");
        let error = config.backend.redis().expect_err(text);
        assert_eq!(error.field, field, "{text}\n{error}");
    }
    let memory_with_url: StackConfig =
        toml::from_str("[backend]\nurl = \"redis://127.0.0.1\"").expect("parses");
    let error = memory_with_url
        .backend
        .memory()
        .expect_err("a Redis key on memory");
    assert_eq!(error.field, "backend.url");
    let memory_with_cluster: StackConfig =
        toml::from_str("[backend]\ncluster = [\"redis://127.0.0.1:7000\"]").expect("parses");
    let error = memory_with_cluster
        .backend
        .memory()
        .expect_err("a cluster on memory");
    assert_eq!(error.field, "backend.cluster");
    let too_few_bytes: StackConfig = toml::from_str("[backend]\nmax_bytes = 1024").expect("parses");
    let error = too_few_bytes
        .backend
        .memory()
        .expect_err("max_bytes under the least");
    assert_eq!(error.field, "backend.max_bytes");
    let bounded: StackConfig = toml::from_str("[backend]\nmax_bytes = 1048576").expect("parses");
    let backend = bounded.backend.memory().expect("a memory backend");
    assert_eq!(backend.max_bytes(), 1 << 20);
}

/// Mistakes serde catches name the key and the line: a typo, a wrong type, a wrong name.
#[test]
fn misspelt_or_mistyped_keys_are_refused_with_their_line() {
    for (text, expected) in [
        ("[rate_limt]\n", "unknown field `rate_limt`"),
        (
            "[rate_limit]\ntiers = { free = \"1/s\" }\nburst = 3\n",
            "unknown field `burst`",
        ),
        (
            "[rate_limit]\ntiers = { free = \"1/s\" }\nietf_headers = \"yes\"\n",
            "ietf_headers",
        ),
        (
            "[rate_limit]\ntiers = { free = \"1/s\" }\nalgorithm = \"leaky\"\n",
            "unknown variant `leaky`",
        ),
        (
            "[backend]\nkind = \"postgres\"\n",
            "unknown variant `postgres`",
        ),
    ] {
        let error = toml::from_str::<StackConfig>(text)
            .expect_err(text)
            .to_string();
        assert!(error.contains(expected), "{text}\n{error}");
        assert!(error.contains("line"), "{error}");
    }
}

/// The demo server refuses a broken configuration file at start, naming the entry, and runs
/// with a valid one, whose policies it applies.
#[tokio::test]
async fn the_demo_runs_from_a_configuration_file_and_refuses_a_broken_one() {
    let dir = std::env::temp_dir().join(common::unique_prefix("demo-config").replace(':', "-"));
    std::fs::create_dir_all(&dir).expect("a directory");

    let broken = dir.join("broken.toml");
    std::fs::write(
        &broken,
        "[rate_limit]\ntiers = { free = \"60/fortnight\" }\n",
    )
    .expect("write");
    let started = std::time::Instant::now();
    let output = std::process::Command::new(common::example_binary("server"))
        .args(["--addr", "127.0.0.1:0", "--config"])
        .arg(&broken)
        .output()
        .expect("run the demo");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("invalid configuration for `rate_limit.tiers.free`"),
        "{stderr}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(10));

    let missing = std::process::Command::new(common::example_binary("server"))
        .args(["--addr", "127.0.0.1:0", "--config"])
        .arg(dir.join("nowhere.toml"))
        .output()
        .expect("run the demo");
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("cannot read the configuration"));

    // The shipped file with a tighter anonymous quota: the server applies the file's.
    let tight = dir.join("tight.toml");
    let text = include_str!("../examples/server.toml")
        .replace("anonymous = \"20/min\"", "anonymous = \"2/min\"");
    assert!(text.contains("anonymous = \"2/min\""));
    std::fs::write(&tight, text).expect("write");
    let config = tight.display().to_string();
    let (_server, base, _log) =
        common::start_example("server", "/health", &["--config", &config]).await;
    let client = reqwest::Client::new();
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let response = client
            .get(format!("{base}/api/v2/appointments/apt_1"))
            .send()
            .await
            .expect("an answer");
        statuses.push(response.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 429]);
}
