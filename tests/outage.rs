//! A Redis outage under load. The whole stack runs on a redis-server of the test's own, served
//! over real HTTP, while clients keep sending three kinds of request:
//! - a plain read, which is only rate limited;
//! - a PHI read, which is audited, conditional and rate limited;
//! - a payment that needs an `Idempotency-Key`, retried with the same key until it succeeds.
//!
//! Redis is killed and started again on the same files (`appendfsync always`, so it keeps every
//! write it acknowledged), then frozen (SIGSTOP) and thawed.
//!
//! While Redis is away, each layer must follow its failure policy: the rate limit lets requests
//! through, while idempotency and audit refuse them with 503. Beyond that:
//! - nothing panics;
//! - no request runs past a bound;
//! - no payment runs twice, through the outage or on a replay after it;
//! - the stack serves normally again within a second of Redis answering.
//!
//! The counts are printed (`cargo test --test outage -- --nocapture`).

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use api_policy::audit::{AuditLayer, RedisStreamSink};
use api_policy::backend::RedisBackend;
use api_policy::stack::StackConfig;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use common::{DEMO_AUDIENCE, DEMO_ISSUER, DEMO_SECRET, RedisProcess, hs256_token};

/// No request may take longer than this, whatever Redis does. Each store call is bounded by the
/// backend's timeout (300 ms here), and a request makes at most a handful of them.
const BOUND: Duration = Duration::from_secs(3);

/// How soon after Redis answers again the stack must serve every kind of request normally.
const RECOVERY: Duration = Duration::from_secs(1);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Kind {
    Plain,
    Phi,
    Payment,
}

const KINDS: [Kind; 3] = [Kind::Plain, Kind::Phi, Kind::Payment];

/// One answered (or failed) request.
struct Sample {
    kind: Kind,
    began: Instant,
    ended: Instant,
    /// `None`: the request failed at the HTTP level (it never does here).
    status: Option<u16>,
}

/// How many times each payment's handler ran, by key.
type Executions = Arc<Mutex<HashMap<String, u32>>>;

fn config() -> StackConfig {
    let text = format!(
        r#"
[callers]
api_key_header = "x-api-key"
[[callers.api_keys]]
key = "k_load"
id = "load"
tier = "default"

[jwt]
issuer = ["{DEMO_ISSUER}"]
audience = ["{DEMO_AUDIENCE}"]
hs256_secret = "{secret}"
optional = true
[[jwt.routes]]
route = "/v2/patients/*"
any_role = ["doctor"]

[rate_limit]
[rate_limit.tiers]
default = "1000000/s"

[versioning]
default = "2"
path_prefix = true
[[versioning.versions]]
version = "2"

[idempotency]
require = ["POST /v2/payments"]
lease_secs = 5

[[conditional.resources]]
route = "/v2/patients/{{id}}"
"#,
        secret = String::from_utf8_lossy(DEMO_SECRET),
    );
    toml::from_str(&text).expect("the configuration parses")
}

fn app(backend: &RedisBackend, executions: Executions) -> Router {
    let audit = AuditLayer::builder(RedisStreamSink::new(backend, "phi"))
        .phi_route_with_subject("/v2/patients/{id}", "id")
        .build()
        .expect("the audit layer builds");
    let stack = config()
        .build(backend)
        .expect("the configuration builds")
        .audit(audit);
    Router::new()
        .route("/v2/status", get(|| async { "up" }))
        .route(
            "/v2/patients/{id}",
            get(|| async { r#"{"id":"pat_1","name":"Ada"}"# }),
        )
        .route("/v2/payments", post(pay))
        .with_state(executions)
        .layer(stack)
}

async fn pay(State(executions): State<Executions>, headers: HeaderMap) -> (StatusCode, String) {
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let mut executions = executions.lock().unwrap_or_else(|e| e.into_inner());
    *executions.entry(key.clone()).or_default() += 1;
    (StatusCode::CREATED, format!("{{\"paid\":\"{key}\"}}"))
}

struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    async fn send(&self, kind: Kind, key: &str) -> Option<reqwest::Response> {
        let request = match kind {
            Kind::Plain => self.http.get(format!("{}/v2/status", self.base)),
            Kind::Phi => self
                .http
                .get(format!("{}/v2/patients/pat_1", self.base))
                .bearer_auth(&self.token),
            Kind::Payment => self
                .http
                .post(format!("{}/v2/payments", self.base))
                .header("idempotency-key", key)
                .body("{\"amount\":100}"),
        };
        request.header("x-api-key", "k_load").send().await.ok()
    }
}

/// Sends the three kinds in turn until `stop`, each payment key retried until it succeeds;
/// returns the samples and the keys that succeeded.
async fn drive(
    client: Arc<Client>,
    worker: usize,
    stop: Arc<AtomicBool>,
) -> (Vec<Sample>, Vec<String>) {
    let (mut samples, mut paid) = (Vec::new(), Vec::new());
    let mut n = 0;
    for turn in 0.. {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let kind = KINDS[turn % 3];
        let key = format!("pay-{worker}-{n}");
        let began = Instant::now();
        let response = client.send(kind, &key).await;
        let status = response.as_ref().map(|r| r.status().as_u16());
        if let Some(response) = response {
            let _ = response.bytes().await;
        }
        samples.push(Sample {
            kind,
            began,
            ended: Instant::now(),
            status,
        });
        if kind == Kind::Payment && status.is_some_and(|s| (200..300).contains(&s)) {
            paid.push(key);
            n += 1;
        }
        if !status.is_some_and(|s| (200..300).contains(&s)) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    (samples, paid)
}

/// How long after `from` the stack first answered every kind with a 2xx.
async fn recovered(client: &Client, probe: &AtomicU64) -> Duration {
    let from = Instant::now();
    loop {
        let key = format!("probe-{}", probe.fetch_add(1, Ordering::Relaxed));
        let mut failing = Vec::new();
        for kind in KINDS {
            match client.send(kind, &key).await {
                Some(r) if r.status().is_success() => {}
                Some(r) => failing.push(format!("{kind:?}: {} {:?}", r.status(), r.text().await)),
                None => failing.push(format!("{kind:?}: no answer")),
            }
        }
        if failing.is_empty() {
            return from.elapsed();
        }
        assert!(
            from.elapsed() < Duration::from_secs(10),
            "the stack had not recovered 10 s after Redis came back: {failing:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The statuses of each kind among requests that began after `from` and ended before `to`.
fn statuses(samples: &[Sample], from: Instant, to: Instant) -> HashMap<Kind, Vec<Option<u16>>> {
    let mut out: HashMap<Kind, Vec<Option<u16>>> = HashMap::new();
    for s in samples.iter().filter(|s| s.began >= from && s.ended <= to) {
        out.entry(s.kind).or_default().push(s.status);
    }
    out
}

fn summary(statuses: &[Option<u16>]) -> String {
    let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
    for s in statuses {
        let name = s.map_or("error".to_string(), |s| s.to_string());
        *counts.entry(name).or_default() += 1;
    }
    format!("{counts:?}")
}

/// During an outage window: plain reads pass (rate limit fails open), PHI reads and payments are
/// refused with 503 (audit and idempotency fail closed). Every kind must have been tried.
fn assert_policies(phase: &str, window: &HashMap<Kind, Vec<Option<u16>>>) {
    for kind in KINDS {
        let seen = window.get(&kind).map(Vec::as_slice).unwrap_or_default();
        println!("{phase}: {kind:?} {}", summary(seen));
        assert!(
            !seen.is_empty(),
            "{phase}: no {kind:?} request fell in the window"
        );
        let expected = if kind == Kind::Plain { 200 } else { 503 };
        assert!(
            seen.iter().all(|s| *s == Some(expected)),
            "{phase}: {kind:?} should all be {expected}, got {}",
            summary(seen)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stack_rides_out_a_redis_outage() {
    let panics = Arc::new(AtomicU64::new(0));
    let default_hook = std::panic::take_hook();
    let counted = panics.clone();
    std::panic::set_hook(Box::new(move |info| {
        counted.fetch_add(1, Ordering::Relaxed);
        default_hook(info);
    }));

    let port = common::free_port();
    let dir = std::env::temp_dir().join(format!("api-policy-outage-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    let Some(redis) = RedisProcess::start_persistent(port, &dir).await else {
        return;
    };
    let backend = RedisBackend::builder(format!("redis://127.0.0.1:{port}"))
        .prefix(common::unique_prefix("outage"))
        .timeout(Duration::from_millis(300))
        .build()
        .expect("the backend builds");
    let executions = Executions::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    let address = listener.local_addr().expect("its address");
    let service = app(&backend, executions.clone());
    let server = tokio::spawn(async move {
        axum::serve(listener, service)
            .await
            .expect("the server runs");
    });
    let client = Arc::new(Client {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("an HTTP client"),
        base: format!("http://{address}"),
        token: hs256_token(DEMO_SECRET, DEMO_ISSUER, DEMO_AUDIENCE, "dr_1", "doctor"),
    });

    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..8)
        .map(|w| tokio::spawn(drive(client.clone(), w, stop.clone())))
        .collect();
    let probe = AtomicU64::new(0);

    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Killed: connections refused.
    drop(redis);
    let killed = Instant::now();
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let restarting = Instant::now();
    let redis = RedisProcess::start_persistent(port, &dir)
        .await
        .expect("redis-server starts again");
    let after_restart = recovered(&client, &probe).await;
    println!("recovered {after_restart:?} after the restarted Redis answered");

    tokio::time::sleep(Duration::from_millis(1000)).await;
    // Frozen: connections open, nothing answers.
    redis.pause();
    let paused = Instant::now();
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let resuming = Instant::now();
    redis.resume();
    let after_resume = recovered(&client, &probe).await;
    println!("recovered {after_resume:?} after the frozen Redis was thawed");

    tokio::time::sleep(Duration::from_millis(1000)).await;
    stop.store(true, Ordering::Relaxed);
    let (mut samples, mut paid) = (Vec::new(), Vec::new());
    for worker in workers {
        let (s, p) = worker.await.expect("a worker finishes");
        samples.extend(s);
        paid.extend(p);
    }

    // Each layer followed its failure policy while Redis was away. The windows leave a margin
    // for requests that were on their way when Redis went.
    let margin = Duration::from_millis(400);
    assert_policies("killed", &statuses(&samples, killed + margin, restarting));
    assert_policies("frozen", &statuses(&samples, paused + margin, resuming));

    // Nothing hung, and nothing failed at the HTTP level.
    let slowest = samples
        .iter()
        .map(|s| s.ended - s.began)
        .max()
        .unwrap_or_default();
    let failed = samples.iter().filter(|s| s.status.is_none()).count();
    println!(
        "{} requests, slowest {slowest:?}, {failed} failed at the HTTP level",
        samples.len()
    );
    assert_eq!(failed, 0);
    assert!(slowest < BOUND, "a request took {slowest:?}");
    let by_status = summary(&samples.iter().map(|s| s.status).collect::<Vec<_>>());
    println!("all answers by status: {by_status}");

    // Every payment that succeeded ran exactly once, and no payment ran without succeeding.
    let ran = executions.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let twice: Vec<_> = ran.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "payments ran more than once: {twice:?}");
    let workers_ran = ran.keys().filter(|k| k.starts_with("pay-")).count();
    println!("{} payments succeeded, {workers_ran} ran", paid.len());
    assert!(paid.len() > 20, "too few payments to judge: {}", paid.len());
    for key in &paid {
        assert_eq!(ran.get(key), Some(&1), "{key}");
    }
    assert_eq!(
        workers_ran,
        paid.len(),
        "a payment ran that never succeeded"
    );

    // A retry of any of them now, after the outage, is a replay, not a second run.
    let mut not_replayed = Vec::new();
    for key in &paid {
        let response = client.send(Kind::Payment, key).await.expect("an answer");
        let replayed = response
            .headers()
            .get("idempotent-replayed")
            .is_some_and(|v| v == "true");
        if response.status().as_u16() != 201 || !replayed {
            not_replayed.push(format!("{key}: {}", response.status()));
        }
    }
    assert!(
        not_replayed.is_empty(),
        "{} of {} retries were not replays: {not_replayed:?}",
        not_replayed.len(),
        paid.len()
    );
    let ran_after = executions.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert_eq!(ran_after, ran, "a replay ran a payment again");

    // The audit trail is one sound chain, holding at least every PHI read that was answered.
    let answered_phi = samples
        .iter()
        .filter(|s| s.kind == Kind::Phi && s.status == Some(200))
        .count() as u64;
    let chain = RedisStreamSink::new(&backend, "phi")
        .verify()
        .await
        .expect("the stream reads")
        .expect("the chain verifies");
    println!(
        "{} audit records for {answered_phi} answered PHI reads",
        chain.records
    );
    assert!(chain.records >= answered_phi);

    assert!(after_restart <= RECOVERY, "{after_restart:?}");
    assert!(after_resume <= RECOVERY, "{after_resume:?}");
    assert_eq!(panics.load(Ordering::Relaxed), 0, "something panicked");
    assert!(!server.is_finished(), "the server stopped");
    server.abort();
    drop(redis);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The sharpest moment of an outage for idempotency: the handler has run, and Redis freezes
/// before its outcome is stored. The answer still goes out, and the outcome is stored once
/// Redis is back (within the lock's lease), so a retry is a replay, not a second payment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outcome_refused_mid_outage_is_stored_when_redis_returns() {
    use api_policy::idempotency::{IdempotencyLayer, RedisIdempotencyStore};
    use tokio::sync::Notify;

    let port = common::free_port();
    let Some(redis) = RedisProcess::start(port).await else {
        return;
    };
    let backend = RedisBackend::builder(format!("redis://127.0.0.1:{port}"))
        .prefix(common::unique_prefix("outage_complete"))
        .timeout(Duration::from_millis(300))
        .build()
        .expect("the backend builds");
    let layer = IdempotencyLayer::builder(RedisIdempotencyStore::new(&backend))
        .require("POST /payments")
        .lease(Duration::from_secs(30))
        .build()
        .expect("the layer builds");
    let runs = Arc::new(AtomicU64::new(0));
    let (started, proceed) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let handler = {
        let (runs, started, proceed) = (runs.clone(), started.clone(), proceed.clone());
        move || async move {
            runs.fetch_add(1, Ordering::SeqCst);
            started.notify_one();
            proceed.notified().await;
            (StatusCode::CREATED, "paid")
        }
    };
    let app = Router::new().route("/payments", post(handler)).layer(layer);
    let pay = || {
        http::Request::post("/payments")
            .header("idempotency-key", "pay-once")
            .body(axum::body::Body::from("{\"amount\":100}"))
            .expect("a request")
    };

    let first = tokio::spawn({
        let app = app.clone();
        async move { common::answer(&app, pay()).await }
    });
    started.notified().await;
    redis.pause();
    proceed.notify_one();
    let first = first.await.expect("the first attempt answers");
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);

    redis.resume();
    let mut retry = common::answer(&app, pay()).await;
    let waited = Instant::now();
    // The outcome is being stored in the background; until then the lock answers 409.
    while retry.status == StatusCode::CONFLICT && waited.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        retry = common::answer(&app, pay()).await;
    }
    assert_eq!(retry.status, StatusCode::CREATED, "{}", retry.body);
    assert!(
        retry.replayed(),
        "the retry ran the handler: {:?}",
        retry.headers
    );
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}
