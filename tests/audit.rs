//! The audit trail on real files: group commit, rotation, recovery after a torn write and after
//! a writer killed with SIGKILL, and tamper detection across files; the Redis stream sink; and
//! the layer over a real stack.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use api_policy::audit::chain::{Tamper, verify};
use api_policy::audit::{AuditRecord, AuditSink, FileSink};

fn record(n: u64) -> AuditRecord {
    common::audit_record(n, "pat_1", "192.0.2.1")
}

fn scratch(test: &str) -> PathBuf {
    common::scratch_log("audit", test, "audit.log")
}

fn check(path: &Path) -> Result<u64, api_policy::audit::chain::ChainError> {
    verify(&FileSink::files(path).unwrap(), FileSink::head(path)).map(|v| v.records)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writes_share_fsyncs_and_chain() {
    let path = scratch("group");
    let sink = FileSink::builder(&path).open().unwrap();
    let tasks: Vec<_> = (0..500)
        .map(|n| {
            let sink = sink.clone();
            tokio::spawn(async move { sink.write(record(n)).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let stats = sink.stats();
    assert_eq!(stats.records, 500);
    assert!(stats.commits < 500, "group commit: {stats:?}");
    assert_eq!(check(&path), Ok(500));
}

/// The head file is rewritten in place after every commit, and whatever was longer in it is
/// cut, so it always holds one line naming the log's last record.
#[tokio::test]
async fn the_head_file_follows_every_commit() {
    let path = scratch("head");
    let mut head_path = path.clone().into_os_string();
    head_path.push(".head");
    {
        let sink = FileSink::builder(&path).open().unwrap();
        for n in 0..3 {
            sink.write(record(n)).await.unwrap();
            assert_eq!(FileSink::head(&path).map(|h| h.next_seq), Some(n + 1));
        }
    }
    // A line padded past what the next one needs, as a hand edit might leave it.
    let padded = std::fs::read_to_string(&head_path)
        .unwrap()
        .trim_end()
        .to_string();
    std::fs::write(&head_path, format!("{padded}{}\n", " ".repeat(200))).unwrap();
    let sink = FileSink::builder(&path).open().unwrap();
    sink.write(record(3)).await.unwrap();
    let text = std::fs::read_to_string(&head_path).unwrap();
    assert!(
        text.starts_with("4 ") && text.len() == 2 + 64 + 1,
        "{text:?}"
    );
    let last = verify(&FileSink::files(&path).unwrap(), None).unwrap();
    assert_eq!(FileSink::head(&path).map(|h| h.head), Some(last.head));
    assert_eq!(check(&path), Ok(4));
}

#[tokio::test]
async fn rotation_keeps_one_chain_across_files() {
    let path = scratch("rotate");
    let sink = FileSink::builder(&path)
        .rotate_at_bytes(4_000)
        .open()
        .unwrap();
    for n in 0..60 {
        sink.write(record(n)).await.unwrap();
    }
    let files = FileSink::files(&path).unwrap();
    assert!(files.len() > 3, "{files:?}");
    assert_eq!(check(&path), Ok(60));
    // Deleting a whole rotated file breaks the chain at the next one.
    std::fs::remove_file(&files[1]).unwrap();
    let error = check(&path).unwrap_err();
    assert!(matches!(error.tamper, Tamper::Deleted { .. }), "{error}");
    assert_eq!(error.file, files[2]);
}

#[tokio::test]
async fn a_torn_tail_is_cut_and_the_chain_continues() {
    let path = scratch("torn");
    {
        let sink = FileSink::builder(&path).open().unwrap();
        for n in 0..10 {
            sink.write(record(n)).await.unwrap();
        }
    }
    // A crash in the middle of a write: half a line, never acknowledged.
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    file.write_all(b"{\"seq\":10,\"prev\":\"ab").unwrap();
    drop(file);
    assert_eq!(check(&path).unwrap_err().tamper, Tamper::Truncated);
    let sink = FileSink::builder(&path).open().unwrap();
    for n in 10..15 {
        sink.write(record(n)).await.unwrap();
    }
    assert_eq!(check(&path), Ok(15));
}

#[tokio::test]
async fn tampering_with_the_files_is_found_at_the_record() {
    let path = scratch("tamper");
    {
        let sink = FileSink::builder(&path).open().unwrap();
        for n in 0..20 {
            sink.write(record(n)).await.unwrap();
        }
    }
    let original = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = original.lines().collect();
    let write = |lines: &[String]| std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let owned = || lines.iter().map(|l| l.to_string()).collect::<Vec<_>>();

    let mut edited = owned();
    edited[7] = edited[7].replace("\"status\":200", "\"status\":404");
    write(&edited);
    let e = check(&path).unwrap_err();
    assert_eq!((e.line, e.tamper), (8, Tamper::Edited));

    let mut deleted = owned();
    deleted.remove(7);
    write(&deleted);
    let e = check(&path).unwrap_err();
    assert_eq!(
        (e.line, e.tamper),
        (8, Tamper::Deleted { first_missing: 7 })
    );

    let mut inserted = owned();
    inserted.insert(12, lines[3].to_string());
    write(&inserted);
    let e = check(&path).unwrap_err();
    assert_eq!((e.line, e.tamper), (13, Tamper::Inserted));

    let mut reordered = owned();
    reordered.swap(5, 6);
    write(&reordered);
    let e = check(&path).unwrap_err();
    assert_eq!((e.line, e.tamper), (6, Tamper::Reordered));

    // The last three records removed cleanly: only the head file can tell.
    let truncated: Vec<String> = owned().into_iter().take(17).collect();
    write(&truncated);
    let e = check(&path).unwrap_err();
    assert_eq!((e.line, e.tamper), (18, Tamper::Truncated));

    // A sink will not write on after the records the head file names were removed.
    let refused = FileSink::builder(&path).open().unwrap_err();
    assert!(
        refused.to_string().contains("records are missing"),
        "{refused}"
    );

    std::fs::write(&path, original).unwrap();
    assert_eq!(check(&path), Ok(20));
}

/// The child side of the SIGKILL test: writes records as fast as it can and prints each
/// acknowledged request id. Runs only when the parent sets `AUDIT_CHILD_PATH`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_writer() {
    let Ok(path) = std::env::var("AUDIT_CHILD_PATH") else {
        return;
    };
    let sink = FileSink::builder(PathBuf::from(path)).open().unwrap();
    common::write_until_killed(sink, 8, record).await;
}

/// A writer killed with SIGKILL mid-stream: after a restart the chain verifies and continues,
/// and every record the writer acknowledged is in the log.
#[tokio::test]
async fn a_killed_writer_loses_no_acknowledged_record() {
    let path = scratch("kill");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["child_writer", "--exact", "--nocapture", "--test-threads=1"])
        .env("AUDIT_CHILD_PATH", &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut acknowledged = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if let Some(id) = line.strip_prefix("ACK ") {
            acknowledged.push(id.to_string());
            if acknowledged.len() == 2_000 {
                // SIGKILL: no destructor, no flush, mid-write.
                child.kill().unwrap();
                break;
            }
        }
    }
    let _ = child.wait();
    assert_eq!(acknowledged.len(), 2_000, "the child wrote too little");

    // Restart: the torn tail (if any) is cut, the chain continues.
    let sink = FileSink::builder(&path).open().unwrap();
    for n in 0..10 {
        sink.write(record(900_000_000 + n)).await.unwrap();
    }
    let total = check(&path).unwrap();
    assert!(total >= 2_010, "{total}");
    let log = std::fs::read_to_string(&path).unwrap();
    let written: std::collections::HashSet<&str> = log
        .lines()
        .filter_map(|l| l.split("\"request_id\":\"").nth(1))
        .filter_map(|rest| rest.split('"').next())
        .collect();
    let missing: Vec<&String> = acknowledged
        .iter()
        .filter(|id| !written.contains(id.as_str()))
        .collect();
    assert!(missing.is_empty(), "acknowledged but missing: {missing:?}");
}

// ---- the layer ---------------------------------------------------------------------------------

mod layer {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
    use std::time::Duration;

    use api_policy::audit::chain::verify;
    use api_policy::audit::{AuditLayer, AuditRecord, AuditSink, Durability, FileSink, SinkError};
    use api_policy::auth::{Algorithm, JwtAuthLayer, Require, VerifyKey};
    use api_policy::backend::MemoryBackend;
    use api_policy::rate_limit::{MemoryRateLimitStore, Quota, RateLimitLayer};
    use axum::Router;
    use axum::body::Body;
    use axum::routing::get;
    use http::{Request, StatusCode};
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::{check, scratch};

    const SECRET: &[u8] = b"an-audit-test-secret-of-at-least-32-bytes";

    fn token(sub: &str, role: &str) -> String {
        crate::common::hs256_token(SECRET, "audit-test", "api", sub, role)
    }

    #[derive(Clone, Default)]
    struct Handled(Arc<AtomicU32>);

    /// Audit outermost, then JWT auth, then a per-caller rate limit, then the records.
    fn stack<Si: AuditSink>(audit: AuditLayer<Si>, handled: &Handled) -> Router {
        let auth = JwtAuthLayer::builder()
            .key(VerifyKey::hmac(Algorithm::HS256, SECRET).unwrap())
            .issuer(["audit-test"])
            .audience(["api"])
            .optional()
            .route("/patients/*", Require::any_role(["doctor"]))
            .build()
            .unwrap();
        let limits = RateLimitLayer::builder(MemoryRateLimitStore::new(&MemoryBackend::new()))
            .tier("default", Quota::per_hour(300))
            .build()
            .unwrap();
        let counter = handled.0.clone();
        Router::new()
            .route(
                "/patients/{id}",
                get(move || {
                    counter.fetch_add(1, Ordering::SeqCst);
                    async { "PATIENT-RECORD: allergies penicillin" }
                }),
            )
            .route("/health", get(|| async { "ok" }))
            .layer(limits)
            .layer(auth)
            .layer(audit)
    }

    fn get_with(uri: &str, token: Option<&str>) -> Request<Body> {
        let mut request = Request::get(uri).header("user-agent", "audit-test/1");
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        request.body(Body::empty()).unwrap()
    }

    /// 1,000 concurrent mixed requests: exactly one record each, statuses matching, chain valid.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn one_record_per_request_under_load() {
        let path = scratch("layer-load");
        let sink = FileSink::builder(&path).open().unwrap();
        let audit = AuditLayer::builder(sink)
            .phi_route_with_subject("/patients/{id}", "id")
            .build()
            .unwrap();
        let handled = Handled::default();
        let app = stack(audit.clone(), &handled);
        let doctor = token("dr_ok", "doctor");
        let greedy = token("dr_greedy", "doctor");
        let patient = token("pat_1", "patient");
        let tasks: Vec<_> = (0..1_000)
            .map(|i| {
                let app = app.clone();
                // 200 each for a doctor within quota, no token and a patient (refused by auth,
                // which spends no quota); 400 for a doctor over the 300/h quota.
                let credential = match i % 10 {
                    0 | 1 => Some(doctor.clone()),
                    2 | 3 => None,
                    4 | 5 => Some(patient.clone()),
                    _ => Some(greedy.clone()),
                };
                tokio::spawn(async move {
                    let uri = format!("/patients/pat_{}", i % 7);
                    let response = app
                        .oneshot(get_with(&uri, credential.as_deref()))
                        .await
                        .unwrap();
                    response.status().as_u16()
                })
            })
            .collect();
        let mut statuses = std::collections::HashMap::new();
        for task in tasks {
            *statuses.entry(task.await.unwrap()).or_insert(0u32) += 1;
        }
        // Unaudited routes leave nothing.
        app.clone()
            .oneshot(get_with("/health", None))
            .await
            .unwrap();
        assert_eq!(
            check(&path),
            Ok(1_000),
            "one record per request, chain valid"
        );
        for status in [200, 401, 403, 429] {
            assert!(statuses.contains_key(&status), "{statuses:?}");
        }
        let log = std::fs::read_to_string(&path).unwrap();
        let mut recorded = std::collections::HashMap::new();
        for line in log.lines() {
            let value: serde_json::Value = serde_json::from_str(line).unwrap();
            let record: AuditRecord = serde_json::from_value(value["record"].clone()).unwrap();
            *recorded.entry(record.status).or_insert(0u32) += 1;
            assert_eq!(record.action, "GET /patients/{id}");
            assert!(record.subject.as_deref().unwrap().starts_with("pat_"));
            match record.status {
                401 => assert_eq!(
                    record.refused_by.as_deref(),
                    Some("unauthenticated").or(record.refused_by.as_deref())
                ),
                403 => assert_eq!(record.refused_by.as_deref(), Some("insufficient_scope")),
                429 => {
                    assert_eq!(record.refused_by.as_deref(), Some("rate_limit_exceeded"));
                    assert_eq!(record.actor.as_deref(), Some("dr_greedy"));
                }
                200 => assert!(record.actor.is_some()),
                other => panic!("unexpected status {other}"),
            }
        }
        assert_eq!(recorded, statuses, "the records match the answers");
        assert_eq!(audit.stats().written, 1_000);
    }

    /// PHI answers that state no `Cache-Control` get `no-store`, or their route's configured
    /// value; an answer's own value is kept; answers off the PHI routes are left alone.
    #[tokio::test]
    async fn phi_answers_are_kept_out_of_shared_caches() {
        use http::HeaderValue;
        use http::header::CACHE_CONTROL;
        let path = scratch("cache-control");
        let audit = AuditLayer::builder(FileSink::builder(&path).open().unwrap())
            .phi_route_with_subject("/patients/{id}", "id")
            .phi_route("/notes/{id}")
            .phi_route("/charts/{id}")
            .route_cache_control(
                "/charts/{id}",
                HeaderValue::from_static("private, max-age=300"),
            )
            .build()
            .unwrap();
        let app = Router::new()
            .route("/patients/{id}", get(|| async { "PATIENT-RECORD" }))
            .route(
                "/notes/{id}",
                get(|| async { ([(CACHE_CONTROL, "private, max-age=60")], "NOTE") }),
            )
            .route("/charts/{id}", get(|| async { "CHART" }))
            .route("/health", get(|| async { "ok" }))
            .layer(audit);
        let cache_control = |uri: &'static str, method: http::Method| {
            let app = app.clone();
            async move {
                let request = Request::builder()
                    .method(method)
                    .uri(uri)
                    .body(Body::empty())
                    .unwrap();
                let response = app.oneshot(request).await.unwrap();
                let value = response
                    .headers()
                    .get(CACHE_CONTROL)
                    .map(|v| v.to_str().unwrap().to_string());
                (response.status(), value)
            }
        };
        let get_ = http::Method::GET;
        assert_eq!(
            cache_control("/patients/pat_1", get_.clone()).await,
            (StatusCode::OK, Some("no-store".into()))
        );
        assert_eq!(
            cache_control("/notes/n_1", get_.clone()).await,
            (StatusCode::OK, Some("private, max-age=60".into())),
            "the handler's own value is kept"
        );
        assert_eq!(
            cache_control("/charts/c_1", get_.clone()).await,
            (StatusCode::OK, Some("private, max-age=300".into()))
        );
        // A refusal on a PHI route is kept out of caches as well.
        assert_eq!(
            cache_control("/patients/pat_1", http::Method::DELETE).await,
            (StatusCode::METHOD_NOT_ALLOWED, Some("no-store".into()))
        );
        assert_eq!(cache_control("/health", get_).await, (StatusCode::OK, None));
        // A route's value for a route the layer does not audit is a configuration error.
        let unknown = AuditLayer::builder(api_policy::audit::TracingSink)
            .phi_route("/patients/{id}")
            .route_cache_control("/charts/{id}", HeaderValue::from_static("no-cache"))
            .build();
        assert!(unknown.is_err());
    }

    /// A sink that refuses: unhealthy (the handler never runs) or failing on write (the answer
    /// is withheld). Either way 503, and the handler's data never leaves.
    #[derive(Clone)]
    struct Broken {
        healthy: Arc<AtomicBool>,
    }

    impl AuditSink for Broken {
        async fn write(&self, _record: AuditRecord) -> Result<(), SinkError> {
            Err(SinkError::Io("disk full".into()))
        }
        fn is_healthy(&self) -> bool {
            self.healthy.load(Ordering::SeqCst)
        }
        fn name(&self) -> &'static str {
            "broken"
        }
    }

    #[tokio::test]
    async fn a_failing_sink_fails_closed() {
        let healthy = Arc::new(AtomicBool::new(false));
        let audit = AuditLayer::builder(Broken {
            healthy: healthy.clone(),
        })
        .phi_route("/patients/*")
        .build()
        .unwrap();
        let handled = Handled::default();
        let app = stack(audit.clone(), &handled);
        let doctor = token("dr_ok", "doctor");
        for sink_healthy in [false, true] {
            healthy.store(sink_healthy, Ordering::SeqCst);
            let response = app
                .clone()
                .oneshot(get_with("/patients/pat_1", Some(&doctor)))
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(response.headers()["retry-after"], "1");
            let body = response.into_body().collect().await.unwrap().to_bytes();
            let body = String::from_utf8_lossy(&body);
            assert!(body.contains("audit_unavailable"), "{body}");
            assert!(!body.contains("PATIENT-RECORD"), "the data left: {body}");
        }
        assert_eq!(
            handled.0.load(Ordering::SeqCst),
            1,
            "unhealthy: the handler never ran"
        );
        // Routes that are not PHI are not held back.
        let health = app.oneshot(get_with("/health", None)).await.unwrap();
        assert_eq!(health.status(), StatusCode::OK);
    }

    /// No Authorization value, body or unallowed query value reaches the records.
    #[tokio::test]
    async fn records_hold_the_minimum_necessary() {
        let path = scratch("layer-minimum");
        let audit = AuditLayer::builder(FileSink::builder(&path).open().unwrap())
            .phi_route_with_subject("/patients/{id}", "id")
            .allow_query_param("page")
            .build()
            .unwrap();
        let app = stack(audit, &Handled::default());
        let doctor = token("dr_ok", "doctor");
        let response = app
            .clone()
            .oneshot(get_with(
                "/patients/pat_3?dob=1961-04-12&page=2&name=Ada%20Lovelace&Grace+Hopper",
                Some(&doctor),
            ))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert!(response.headers().contains_key("x-request-id"));
        let log = std::fs::read_to_string(&path).unwrap();
        for secret in [
            doctor.as_str(),
            "Bearer",
            "PATIENT-RECORD",
            "penicillin",
            "1961-04-12",
            "Lovelace",
        ] {
            assert!(!log.contains(secret), "`{secret}` is in the audit log");
        }
        assert!(
            log.contains("dob=REDACTED&page=2&name=REDACTED&REDACTED"),
            "{log}"
        );
        assert!(log.contains("\"user_agent\":\"audit-test/1\""));
    }

    /// A client that hangs up while the handler runs still leaves its record: status 499,
    /// `client_closed_request` (the handler, cancelled with it, may have changed data).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_client_hanging_up_still_leaves_a_record() {
        let path = scratch("layer-hangup");
        let audit = AuditLayer::builder(FileSink::builder(&path).open().unwrap())
            .phi_route("/slow/*")
            .build()
            .unwrap();
        let ran = Arc::new(AtomicBool::new(false));
        let flag = ran.clone();
        let app = Router::new()
            .route(
                "/slow/{id}",
                get(move || {
                    let flag = flag.clone();
                    async move {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        flag.store(true, Ordering::SeqCst);
                        "done"
                    }
                }),
            )
            .layer(audit);
        let request = tokio::spawn(app.oneshot(get_with("/slow/1", None)));
        tokio::time::sleep(Duration::from_millis(50)).await;
        request.abort();
        for _ in 0..100 {
            if check(&path) == Ok(1) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Past the handler's 200 ms: had it gone on running, it would have finished by now.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            !ran.load(Ordering::SeqCst),
            "the handler was cancelled with the request"
        );
        assert_eq!(check(&path), Ok(1), "and its record was written");
        let log = std::fs::read_to_string(&path).unwrap();
        assert!(
            log.contains("\"status\":499") && log.contains("client_closed_request"),
            "{log}"
        );
    }

    /// A service that fails rather than answers: the error reaches the caller unchanged, and
    /// the attempt is on record as a 500 refused by `service_error`, in both durabilities.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_service_is_on_record() {
        for buffered in [false, true] {
            let path = scratch(&format!("layer-service-error-{buffered}"));
            let mut builder = AuditLayer::builder(FileSink::builder(&path).open().unwrap())
                .phi_route("/patients/*");
            if buffered {
                builder = builder
                    .durability(Durability::Buffered {
                        capacity: 8,
                        drop_when_full: false,
                    })
                    .commit_interval(Duration::from_millis(5));
            }
            let audit = builder.build().unwrap();
            let failing = tower::service_fn(|_: http::Request<Body>| async {
                Err::<http::Response<Body>, _>(std::io::Error::other("the database is down"))
            });
            let service = tower::ServiceBuilder::new()
                .layer(audit.clone())
                .service(failing);
            let error = service
                .oneshot(get_with("/patients/pat_1", None))
                .await
                .expect_err("the service's error is passed on");
            assert_eq!(error.to_string(), "the database is down");
            assert_eq!(written(&audit, 1).await, 1, "buffered: {buffered}");
            assert_eq!(check(&path), Ok(1));
            let log = std::fs::read_to_string(&path).unwrap();
            assert!(
                log.contains("\"status\":500") && log.contains("\"refused_by\":\"service_error\""),
                "{log}"
            );
        }
    }

    /// Buffered: the answer does not wait, the records still all land, in one chain.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn buffered_records_land() {
        let path = scratch("layer-buffered");
        let audit = AuditLayer::builder(FileSink::builder(&path).open().unwrap())
            .phi_route("/patients/*")
            .durability(Durability::Buffered {
                capacity: 64,
                drop_when_full: false,
            })
            .build()
            .unwrap();
        let app = stack(audit.clone(), &Handled::default());
        let doctor = token("dr_ok", "doctor");
        for i in 0..40 {
            let uri = format!("/patients/pat_{i}");
            app.clone()
                .oneshot(get_with(&uri, Some(&doctor)))
                .await
                .unwrap();
        }
        for _ in 0..200 {
            if audit.stats().written == 40 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(audit.stats().written, 40);
        assert_eq!(check(&path), Ok(40));
        let _ = verify(&FileSink::files(&path).unwrap(), None).unwrap();
    }

    /// A buffered layer over a fresh log for `test`, on `/patients/*`.
    fn buffered(
        test: &str,
        capacity: usize,
        drop_when_full: bool,
        interval: Duration,
    ) -> (std::path::PathBuf, AuditLayer<FileSink>) {
        let path = scratch(test);
        let audit = AuditLayer::builder(FileSink::builder(&path).open().unwrap())
            .phi_route("/patients/*")
            .durability(Durability::Buffered {
                capacity,
                drop_when_full,
            })
            .commit_interval(interval)
            .build()
            .unwrap();
        (path, audit)
    }

    /// Waits up to 5 s for the layer's writer to have written `records`.
    async fn written(audit: &AuditLayer<FileSink>, records: u64) -> u64 {
        for _ in 0..500 {
            if audit.stats().written >= records {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        audit.stats().written
    }

    /// A full buffer makes requests wait for the writer (back-pressure): with room for two
    /// records, forty requests at once are all answered and all recorded, in one chain.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_buffer_makes_requests_wait_and_loses_nothing() {
        let (path, audit) = buffered("layer-backpressure", 2, false, Duration::from_millis(5));
        let app = stack(audit.clone(), &Handled::default());
        let doctor = token("dr_ok", "doctor");
        let calls: Vec<_> = (0..40)
            .map(|i| {
                let call = app
                    .clone()
                    .oneshot(get_with(&format!("/patients/pat_{i}"), Some(&doctor)));
                tokio::spawn(async move { call.await.unwrap().status() })
            })
            .collect();
        for call in calls {
            assert_eq!(call.await.unwrap(), StatusCode::OK);
        }
        assert_eq!(written(&audit, 40).await, 40);
        assert_eq!(audit.stats().dropped, 0);
        assert_eq!(check(&path), Ok(40));
    }

    /// With `drop_when_full`, a full buffer drops and counts records rather than make requests
    /// wait; the records it kept are written, in one chain.
    #[tokio::test]
    async fn a_full_buffer_drops_and_counts_when_told_to() {
        // The writer takes nothing for a long while: the first record fills the buffer.
        let (path, audit) = buffered("layer-drop", 1, true, Duration::from_millis(800));
        let app = stack(audit.clone(), &Handled::default());
        let doctor = token("dr_ok", "doctor");
        for i in 0..5 {
            let answer = app
                .clone()
                .oneshot(get_with(&format!("/patients/pat_{i}"), Some(&doctor)))
                .await
                .unwrap();
            assert_eq!(
                answer.status(),
                StatusCode::OK,
                "a dropped record holds no answer back"
            );
        }
        assert_eq!(audit.stats().dropped, 4);
        assert_eq!(written(&audit, 1).await, 1);
        assert_eq!(check(&path), Ok(1));
    }

    /// Records gather for the commit interval, then are written together.
    #[tokio::test]
    async fn buffered_records_wait_for_the_commit_interval() {
        let (path, audit) = buffered("layer-interval", 64, false, Duration::from_millis(600));
        let app = stack(audit.clone(), &Handled::default());
        let doctor = token("dr_ok", "doctor");
        for i in 0..3 {
            let uri = format!("/patients/pat_{i}");
            app.clone()
                .oneshot(get_with(&uri, Some(&doctor)))
                .await
                .unwrap();
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(
            audit.stats().written,
            0,
            "nothing is written before the interval"
        );
        assert_eq!(written(&audit, 3).await, 3);
        assert_eq!(
            audit.sink().stats().commits,
            1,
            "one commit for the interval's records"
        );
        assert_eq!(check(&path), Ok(3));
    }
}

/// `cargo run --example audit_verify -- PATH`: 0 and `OK` for a sound log, 1 and the place for a
/// broken one. `cargo test` builds the examples beside the test binaries.
#[tokio::test]
async fn the_verify_program_reports_and_exits_accordingly() {
    let path = scratch("program");
    {
        let sink = FileSink::builder(&path)
            .rotate_at_bytes(3_000)
            .open()
            .unwrap();
        for n in 0..30 {
            sink.write(record(n)).await.unwrap();
        }
    }
    let program = std::env::current_exe()
        .unwrap()
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .join("examples")
        .join("audit_verify");
    assert!(
        program.exists(),
        "{} is missing: run `cargo test --all-features`",
        program.display()
    );
    let run = |path: &Path| Command::new(&program).arg(path).output().unwrap();
    let ok = run(&path);
    assert_eq!(ok.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&ok.stdout).starts_with("OK: 30 records"),
        "{ok:?}"
    );
    let files = FileSink::files(&path).unwrap();
    let victim = &files[1];
    let text = std::fs::read_to_string(victim).unwrap();
    std::fs::write(victim, text.replacen("\"status\":200", "\"status\":204", 1)).unwrap();
    let broken = run(&path);
    assert_eq!(broken.status.code(), Some(1));
    let report = String::from_utf8_lossy(&broken.stderr);
    assert!(
        report.contains("BROKEN") && report.contains(":1: record edited"),
        "{report}"
    );
    assert_eq!(run(&path.with_extension("nothing")).status.code(), Some(2));
}

/// On a Redis Cluster, the stream, its head and its turn share a slot: instances appending at
/// once still keep one chain.
#[cfg(feature = "cluster")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_stream_keeps_one_chain_on_a_cluster() {
    use api_policy::audit::RedisStreamSink;
    use api_policy::backend::RedisBackend;
    let Some(urls) = common::redis_cluster_or_skip("audit_stream_cluster").await else {
        return;
    };
    let prefix = common::unique_prefix("audit_stream_cluster");
    let sink = || {
        let backend = RedisBackend::cluster(urls.clone())
            .prefix(prefix.clone())
            .build()
            .unwrap();
        RedisStreamSink::new(&backend, "phi")
    };
    let sinks = [sink(), sink(), sink()];
    let tasks: Vec<_> = (0..120u64)
        .map(|n| {
            let sink = sinks[n as usize % 3].clone();
            tokio::spawn(async move { sink.write(record(n)).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let verified = sinks[2].verify().await.unwrap().unwrap();
    assert_eq!((verified.records, verified.next_seq), (120, 120));
}

/// Several instances (connections) appending to one Redis stream keep one chain; deleting an
/// entry breaks it at that entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_stream_keeps_one_chain_across_instances() {
    use api_policy::audit::RedisStreamSink;
    use api_policy::backend::RedisBackend;
    let Some(url) = common::redis_or_skip("audit_stream").await else {
        return;
    };
    let prefix = common::unique_prefix("audit_stream");
    let sink = |url: &str| {
        let backend = RedisBackend::builder(url)
            .prefix(prefix.clone())
            .build()
            .unwrap();
        RedisStreamSink::new(&backend, "phi")
    };
    // Four instances, one of them busy: no instance is starved of its turn.
    let sinks = [sink(&url), sink(&url), sink(&url), sink(&url)];
    let (one, two) = (sinks[0].clone(), sinks[1].clone());
    let tasks: Vec<_> = (0..400u64)
        .map(|n| {
            let sink = sinks[if n % 2 == 0 {
                0
            } else {
                1 + (n as usize / 2) % 3
            }]
            .clone();
            tokio::spawn(async move { sink.write(record(n)).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let verified = one.verify().await.unwrap().unwrap();
    assert_eq!((verified.records, verified.next_seq), (400, 400));

    let mut redis = common::raw_connection(&url).await;
    let entries: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg(one.stream_key())
        .arg("-")
        .arg("+")
        .query_async(&mut redis)
        .await
        .unwrap();
    let _: i64 = redis::cmd("XDEL")
        .arg(one.stream_key())
        .arg(&entries[41].0)
        .query_async(&mut redis)
        .await
        .unwrap();
    let error = two.verify().await.unwrap().unwrap_err();
    assert_eq!(
        (error.line, error.tamper),
        (42, Tamper::Deleted { first_missing: 41 })
    );
}

/// Daily rotation: the first commit of a new UTC day starts a new file; the chain goes on.
#[tokio::test]
async fn daily_rotation_follows_the_clock() {
    let path = scratch("daily");
    let clock = api_policy::clock::ManualClock::at_secs(1_795_521_600);
    let sink = FileSink::builder(&path)
        .rotate_daily()
        .clock(clock.clone())
        .open()
        .unwrap();
    for n in 0..5 {
        sink.write(record(n)).await.unwrap();
    }
    clock.advance(std::time::Duration::from_secs(86_400));
    for n in 5..8 {
        sink.write(record(n)).await.unwrap();
    }
    let files = FileSink::files(&path).unwrap();
    assert_eq!(files.len(), 2, "{files:?}");
    assert_eq!(
        std::fs::read_to_string(&files[0]).unwrap().lines().count(),
        5
    );
    assert_eq!(check(&path), Ok(8));
}
