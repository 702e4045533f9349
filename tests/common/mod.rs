//! Shared test support: a real Redis, or a loud skip on a laptop without one.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};

/// The Redis URL the tests use: `REDIS_URL`, or the local default.
pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_string())
}

/// Whether a missing Redis must fail the test run: in CI (`CI` set) or when
/// `API_POLICY_REQUIRE_REDIS` is set.
pub fn redis_required() -> bool {
    std::env::var_os("CI").is_some() || std::env::var_os("API_POLICY_REQUIRE_REDIS").is_some()
}

/// Some(url) when Redis answers PING. Without Redis: panics in CI, else prints a loud skip.
pub async fn redis_or_skip(test: &str) -> Option<String> {
    let url = redis_url();
    let answer = async {
        let client = redis::Client::open(url.as_str())?;
        let mut connection = client.get_multiplexed_async_connection().await?;
        redis::cmd("PING")
            .query_async::<String>(&mut connection)
            .await
    };
    match tokio::time::timeout(std::time::Duration::from_secs(2), answer).await {
        Ok(Ok(_)) => Some(url),
        outcome => {
            let why = match outcome {
                Ok(Err(e)) => e.to_string(),
                _ => "no answer within 2 s".to_string(),
            };
            assert!(
                !redis_required(),
                "{test}: Redis at {url} is required here (CI) but unreachable: {why}"
            );
            eprintln!(
                "\n!!! SKIPPED {test}: no Redis at {url} ({why}). Set REDIS_URL or start redis-server. !!!\n"
            );
            None
        }
    }
}

/// A key prefix no other test (or earlier run) uses.
pub fn unique_prefix(test: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "test:{test}:{}:{nanos}:{}:",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A plain connection for inspecting Redis from a test.
pub async fn raw_connection(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .expect("redis url")
        .get_multiplexed_async_connection()
        .await
        .expect("redis connection")
}

/// A loopback port nobody listens on (at the moment of asking).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A redis-server of the test's own, killed when dropped (pass or fail).
pub struct RedisProcess(std::process::Child);

impl RedisProcess {
    /// Starts redis-server on `port` and waits until it answers. Without the binary: `None` on a
    /// laptop (with a loud message), a failure in CI.
    pub async fn start(port: u16) -> Option<Self> {
        Self::start_with(port, &["--appendonly", "no"]).await
    }

    /// As [`start`](Self::start), persisting every write to an append-only file in `dir` before
    /// answering it (`appendfsync always`), so a restart on the same `dir` loses nothing it
    /// acknowledged.
    pub async fn start_persistent(port: u16, dir: &std::path::Path) -> Option<Self> {
        let dir = dir.to_str().expect("a UTF-8 directory");
        let args = [
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--dir",
            dir,
        ];
        Self::start_with(port, &args).await
    }

    async fn start_with(port: u16, extra: &[&str]) -> Option<Self> {
        let child = std::process::Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(extra)
            .stdout(std::process::Stdio::null())
            .spawn();
        let process = match child {
            Ok(child) => Self(child),
            Err(e) => {
                assert!(!redis_required(), "redis-server is needed here (CI): {e}");
                eprintln!("\n!!! SKIPPED: no redis-server binary to start ({e}) !!!\n");
                return None;
            }
        };
        let url = format!("redis://127.0.0.1:{port}");
        let answers = || async {
            let client = redis::Client::open(url.as_str())?;
            let mut connection = client.get_multiplexed_async_connection().await?;
            redis::cmd("PING")
                .query_async::<String>(&mut connection)
                .await
        };
        for _ in 0..100 {
            if answers().await.is_ok() {
                return Some(process);
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("redis-server on port {port} did not answer within 5 s");
    }
}

impl RedisProcess {
    /// Freezes the server (SIGSTOP): connections stay open and nothing answers.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Thaws a paused server (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .args([signal, &self.0.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill {signal} failed");
    }
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The Redis Cluster the tests use: `REDIS_CLUSTER_URLS` (node URLs, comma-separated), or the
/// three local nodes `scripts/redis-cluster.sh` starts.
pub fn redis_cluster_urls() -> Vec<String> {
    std::env::var("REDIS_CLUSTER_URLS")
        .unwrap_or_else(|_| {
            "redis://127.0.0.1:7000,redis://127.0.0.1:7001,redis://127.0.0.1:7002".to_string()
        })
        .split(',')
        .map(|u| u.trim().to_string())
        .filter(|u| !u.is_empty())
        .collect()
}

/// Some(node URLs) when every node reports `cluster_state:ok`. Without a cluster: panics in CI,
/// else prints a loud skip.
pub async fn redis_cluster_or_skip(test: &str) -> Option<Vec<String>> {
    let urls = redis_cluster_urls();
    let state = |url: String| async move {
        let client = redis::Client::open(url.as_str())?;
        let mut connection = client.get_multiplexed_async_connection().await?;
        redis::cmd("CLUSTER")
            .arg("INFO")
            .query_async::<String>(&mut connection)
            .await
    };
    let mut why = None;
    for url in &urls {
        match tokio::time::timeout(std::time::Duration::from_secs(2), state(url.clone())).await {
            Ok(Ok(info)) if info.contains("cluster_state:ok") => {}
            Ok(Ok(_)) => why = Some(format!("{url}: cluster_state is not ok")),
            Ok(Err(e)) => why = Some(format!("{url}: {e}")),
            Err(_) => why = Some(format!("{url}: no answer within 2 s")),
        }
    }
    let Some(why) = why else { return Some(urls) };
    assert!(
        !redis_required(),
        "{test}: a Redis Cluster is required here (CI) but {why}; start one with scripts/redis-cluster.sh"
    );
    eprintln!(
        "\n!!! SKIPPED {test} on Redis Cluster ({why}). Run scripts/redis-cluster.sh or set REDIS_CLUSTER_URLS. !!!\n"
    );
    None
}

/// A backend on the Redis Cluster under a prefix of the test's own, deciding by `clock`.
#[cfg(feature = "cluster")]
pub async fn redis_cluster_backend(
    test: &str,
    clock: &api_policy::clock::ManualClock,
) -> Option<api_policy::backend::RedisBackend> {
    let urls = redis_cluster_or_skip(test).await?;
    Some(
        api_policy::backend::RedisBackend::cluster(urls)
            .prefix(unique_prefix(test))
            .clock(clock.clone())
            .build()
            .expect("redis cluster backend"),
    )
}

/// A memory backend reading `clock`.
pub fn memory_backend(
    clock: &api_policy::clock::ManualClock,
) -> api_policy::backend::MemoryBackend {
    api_policy::backend::MemoryBackend::builder()
        .clock(clock.clone())
        .build()
        .expect("memory backend")
}

/// A Redis backend under a prefix of the test's own, deciding by `clock`; `None` on a laptop
/// without Redis (see [`redis_or_skip`]).
pub async fn redis_backend(
    test: &str,
    clock: &api_policy::clock::ManualClock,
) -> Option<api_policy::backend::RedisBackend> {
    let url = redis_or_skip(test).await?;
    Some(
        api_policy::backend::RedisBackend::builder(url)
            .prefix(unique_prefix(test))
            .clock(clock.clone())
            .build()
            .expect("redis backend"),
    )
}

/// Runs each scenario, an `async fn(store, ManualClock)`, on every backend: the invoking module
/// provides `fn memory(&ManualClock) -> Store`, `fn redis(&RedisBackend) -> Store` and the start
/// time `T0` (microseconds). Redis runs as one server and, with the `cluster` feature, as a
/// three-master Redis Cluster (`scripts/redis-cluster.sh`). Several worker threads, so concurrent
/// scenarios really race.
#[allow(unused_macros)]
macro_rules! on_both_backends {
    ($($scenario:ident),* $(,)?) => {
        mod memory_backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $scenario() {
                    let clock = api_policy::clock::ManualClock::at_micros(super::T0);
                    super::$scenario(super::memory(&clock), clock).await;
                }
            )*
        }
        mod redis_backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    let clock = api_policy::clock::ManualClock::at_micros(super::T0);
                    let test = stringify!($scenario);
                    let Some(backend) = crate::common::redis_backend(test, &clock).await else { return };
                    super::$scenario(super::redis(&backend), clock).await;
                }
            )*
        }
        #[cfg(feature = "cluster")]
        mod redis_cluster_backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    let clock = api_policy::clock::ManualClock::at_micros(super::T0);
                    let test = stringify!($scenario);
                    let Some(backend) = crate::common::redis_cluster_backend(test, &clock).await else { return };
                    super::$scenario(super::redis(&backend), clock).await;
                }
            )*
        }
    };
}

/// An answer read whole: status, headers and body text.
#[derive(Debug)]
pub struct Answer {
    pub status: http::StatusCode,
    pub headers: http::HeaderMap,
    pub body: String,
}

impl Answer {
    /// Every value of the header, in order.
    pub fn header(&self, name: &str) -> Vec<String> {
        self.headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect()
    }

    /// The `ETag`, or an empty string.
    pub fn etag(&self) -> String {
        self.header("etag").into_iter().next().unwrap_or_default()
    }

    /// Whether the answer is an idempotent replay.
    pub fn replayed(&self) -> bool {
        self.headers
            .get("idempotent-replayed")
            .is_some_and(|v| v == "true")
    }

    /// The problem body's `error` code, or an empty string.
    pub fn error(&self) -> String {
        serde_json::from_str::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_string))
            .unwrap_or_default()
    }
}

/// Sends `request` through `app` in process and reads the whole answer.
pub async fn answer(app: &axum::Router, request: http::Request<axum::body::Body>) -> Answer {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let response = app.clone().oneshot(request).await.expect("infallible");
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("a body").to_bytes();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// An example binary run by a test, killed when dropped.
pub struct Example(std::process::Child);

impl Example {
    /// The example's process id (to read its `/proc/PID/status`, say).
    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    /// Sends SIGINT (Ctrl-C) and waits up to `patience` for the example to exit; its status.
    pub fn interrupt(mut self, patience: std::time::Duration) -> Option<std::process::ExitStatus> {
        let _ = std::process::Command::new("kill")
            .args(["-INT", &self.0.id().to_string()])
            .status();
        let deadline = std::time::Instant::now() + patience;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.0.try_wait() {
                return Some(status);
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Example {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `cargo test` builds the examples beside the test binaries: `target/<profile>/examples/`.
pub fn example_binary(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>");
    let binary = profile_dir.join("examples").join(name);
    assert!(
        binary.exists(),
        "{} is missing: run the tests with `cargo test --all-features`, which builds the examples",
        binary.display()
    );
    binary
}

/// Starts example `name` on a free port with `--addr` and `--audit-log` (in a directory of its
/// own) and the `extra` arguments; its base URL once `probe` (a path) answers over HTTP/1, or,
/// for an empty `probe`, once it accepts connections; and its audit log.
pub async fn start_example(
    name: &str,
    probe: &str,
    extra: &[&str],
) -> (Example, String, std::path::PathBuf) {
    let port = free_port();
    let audit_log = std::env::temp_dir()
        .join(format!("api-policy-{name}-{port}"))
        .join("audit.log");
    let child = std::process::Command::new(example_binary(name))
        .args(["--addr", &format!("127.0.0.1:{port}")])
        .arg("--audit-log")
        .arg(&audit_log)
        .args(extra)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start the example");
    let example = Example(child);
    let base = format!("http://127.0.0.1:{port}");
    for _ in 0..100 {
        let up = if probe.is_empty() {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
        } else {
            reqwest::get(format!("{base}{probe}")).await.is_ok()
        };
        if up {
            return (example, base, audit_log);
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("{name} did not answer on {base}");
}

/// The demo's development secret, issuer and audience (`examples/mint_token.rs`).
pub const DEMO_SECRET: &[u8] = b"api-policy-demo-secret-change-me-0123";
pub const DEMO_ISSUER: &str = "api-policy-demo";
pub const DEMO_AUDIENCE: &str = "demo-api";

/// An HS256 token for `sub` with `role`, valid until 2096.
#[cfg(feature = "jwt")]
pub fn hs256_token(secret: &[u8], issuer: &str, audience: &str, sub: &str, role: &str) -> String {
    let claims = serde_json::json!({
        "sub": sub, "role": role, "iss": issuer, "aud": audience,
        "exp": 4_000_000_000u64, "iat": 1_700_000_000u64,
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret),
    )
    .expect("HS256 signing")
}

/// The child side of the SIGKILL tests: `tasks` tasks write records (`record(id)`) into `sink`
/// as fast as they go, and each acknowledged request id is printed (`ACK req-ID`) the moment
/// it is, until the process is killed.
pub async fn write_until_killed(
    sink: api_policy::audit::FileSink,
    tasks: u64,
    record: fn(u64) -> api_policy::audit::AuditRecord,
) {
    use api_policy::audit::AuditSink;
    use std::io::Write;
    let (acks, mut acked) = tokio::sync::mpsc::unbounded_channel();
    for n in 0..tasks {
        let (sink, acks) = (sink.clone(), acks.clone());
        tokio::spawn(async move {
            for i in 0.. {
                let id = n * 1_000_000 + i;
                if sink.write(record(id)).await.is_ok() {
                    let _ = acks.send(id);
                }
            }
        });
    }
    let mut out = std::io::stdout();
    while let Some(id) = acked.recv().await {
        let _ = writeln!(out, "ACK req-{id}");
        let _ = out.flush();
    }
}

/// An audit record of a `GET` of patient `pat_1` by `actor` from `source_ip`, numbered `n` (its
/// request id `req-N`, its time and latency moving with it).
pub fn audit_record(n: u64, actor: &str, source_ip: &str) -> api_policy::audit::AuditRecord {
    serde_json::from_value(serde_json::json!({
        "time": api_policy::audit::AuditRecord::timestamp(1_795_521_600_000_000 + n),
        "request_id": format!("req-{n}"),
        "actor": actor,
        "actor_kind": "user",
        "session": null,
        "action": "GET /api/v2/patients/{id}",
        "resource": "/api/v2/patients/pat_1",
        "subject": "pat_1",
        "status": 200,
        "refused_by": null,
        "source_ip": source_ip,
        "user_agent": "test",
        "latency_us": n,
    }))
    .expect("an audit record")
}

/// A new, empty directory for test `test` (`kind` names the suite), and the log path in it.
pub fn scratch_log(kind: &str, test: &str, file: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("api-policy-{kind}-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    dir.join(file)
}
