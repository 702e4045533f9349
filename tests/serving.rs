//! The connection limits of the examples (`examples/support/serving.rs`) against the demo, hyper
//! and gRPC binaries, over real TCP: slowloris heads and silent connections are closed at the
//! header-read timeout, idle keep-alive connections at the keep-alive timeout, busy ones and slow
//! answers are not, the connection cap holds new clients in the backlog until one closes, and a
//! flood of huge unfinished heads leaves resident memory bounded.
//!
//! The tests run one at a time: each measures times (and one, memory) of a process of its own.

mod common;

// The serving module itself, for a service of the test's own (a streaming answer).
#[allow(dead_code)]
#[path = "../examples/support/serving.rs"]
mod serving;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One test at a time: timings on a small machine, and memory, are measured alone.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Example `name` started with `flags`: the process and its address.
async fn start(name: &str, probe: &str, flags: &[&str]) -> (common::Example, SocketAddr) {
    let (example, base, _) = common::start_example(name, probe, flags).await;
    let addr = base.trim_start_matches("http://").parse().unwrap();
    (example, addr)
}

/// How long after `since` the server closed `stream` (EOF or reset), reading and dropping
/// whatever it sends; `None` if it is still open at `since + within`.
async fn closed_after(
    stream: &mut TcpStream,
    since: Instant,
    within: Duration,
) -> Option<Duration> {
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::from_std(since + within);
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some(since.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

/// Sends `request` (a whole HTTP/1.1 request) and reads its answer: the status line and body.
async fn exchange(stream: &mut TcpStream, request: &str) -> (String, String) {
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&data[..end]).to_string();
            let length: usize = head
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().unwrap())
                })
                .expect("a content-length");
            if data.len() >= end + 4 + length {
                let body = String::from_utf8_lossy(&data[end + 4..end + 4 + length]).to_string();
                let status = head.lines().next().unwrap_or_default().to_string();
                return (status, body);
            }
        }
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed before the answer was whole: {data:?}");
        data.extend_from_slice(&buf[..n]);
    }
}

const HEALTH: &str = "GET /health HTTP/1.1\r\nHost: demo\r\n\r\n";

/// `/proc/PID/status` field `name` (`VmRSS`, `VmHWM`), in bytes.
fn proc_status_bytes(pid: u32, name: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with(&format!("{name}:")))
        .unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

const STALE: &str = "(a stale binary? build them with `cargo build --all-features --examples`)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_connections_are_closed_at_the_header_timeout_while_others_are_served() {
    let _serial = SERIAL.lock().await;
    let (_demo, addr) = start(
        "server",
        "/health",
        &["--header-read-timeout", "1", "--keep-alive-timeout", "1"],
    )
    .await;
    const SLOW: usize = 500;
    let mut slow = Vec::new();
    for i in 0..SLOW {
        slow.push(tokio::spawn(async move {
            // Lifetimes from before the connect (never shorter than the server's) and from
            // its end (a SYN dropped in the burst is sent again a second later).
            let connecting = Instant::now();
            let mut stream = TcpStream::connect(addr).await.unwrap();
            let opened = Instant::now();
            let lifetime = move || (connecting.elapsed(), opened.elapsed());
            // A head begun and never finished: one more byte every 200 ms.
            stream
                .write_all(format!("GET /health HTTP/1.1\r\nHost: demo\r\nX-Slow-{i}: ").as_bytes())
                .await
                .unwrap();
            let mut buf = [0u8; 1024];
            loop {
                tokio::select! {
                    read = stream.read(&mut buf) => match read {
                        Ok(0) | Err(_) => return Some(lifetime()),
                        Ok(_) => {}
                    },
                    () = tokio::time::sleep(Duration::from_millis(200)) => {
                        if stream.write_all(b"a").await.is_err() {
                            return Some(lifetime());
                        }
                    }
                }
                if opened.elapsed() > Duration::from_secs(10) {
                    return None;
                }
            }
        }));
    }
    // Meanwhile an ordinary client is served at once.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let client = reqwest::Client::new();
    for _ in 0..5 {
        let asked = Instant::now();
        let status = client
            .get(format!("http://{addr}/health"))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 200);
        assert!(
            asked.elapsed() < Duration::from_millis(500),
            "an ordinary request took {:?} among the slowloris connections",
            asked.elapsed()
        );
    }
    let mut lifetimes = Vec::new();
    for task in slow {
        let lifetime = task.await.unwrap();
        lifetimes.push(lifetime.expect("a slowloris connection open after 10 s"));
    }
    let shortest = lifetimes
        .iter()
        .map(|(from_connecting, _)| *from_connecting)
        .min();
    let longest = lifetimes.iter().map(|(_, from_open)| *from_open).max();
    let (shortest, longest) = (shortest.unwrap(), longest.unwrap());
    println!(
        "{SLOW} slowloris connections (header-read timeout 1 s) closed {shortest:?} to \
         {longest:?} after they opened"
    );
    assert!(
        shortest >= Duration::from_millis(900),
        "closed early: {shortest:?}"
    );
    assert!(
        longest <= Duration::from_millis(2000),
        "closed late: {longest:?} {STALE}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_idle_connections_are_closed_and_busy_ones_are_not() {
    let _serial = SERIAL.lock().await;
    // The keep-alive timeout is the shorter, so each close shows which limit made it.
    let (_demo, addr) = start(
        "server",
        "/health",
        &[
            "--header-read-timeout",
            "2",
            "--keep-alive-timeout",
            "1",
            "--booking-latency-ms",
            "2500",
        ],
    )
    .await;

    // Connected, and nothing sent: closed at the header-read timeout.
    let mut silent = TcpStream::connect(addr).await.unwrap();
    let closed = closed_after(&mut silent, Instant::now(), Duration::from_secs(5))
        .await
        .unwrap_or_else(|| panic!("a silent connection open after 5 s {STALE}"));
    println!("silent connection closed after {closed:?} (header-read timeout 2 s)");
    assert!((1800..=3000).contains(&closed.as_millis()), "{closed:?}");

    // Half a head, then nothing: closed at the header-read timeout.
    let mut half = TcpStream::connect(addr).await.unwrap();
    half.write_all(b"GET /health HTTP/1.1\r\nHost: de")
        .await
        .unwrap();
    let closed = closed_after(&mut half, Instant::now(), Duration::from_secs(5))
        .await
        .expect("a half-head connection open after 5 s");
    println!("half-head connection closed after {closed:?} (header-read timeout 2 s)");
    assert!((1800..=3000).contains(&closed.as_millis()), "{closed:?}");

    // One request answered, then silence: closed at the keep-alive timeout.
    let mut idle = TcpStream::connect(addr).await.unwrap();
    let (status, _) = exchange(&mut idle, HEALTH).await;
    assert!(status.contains(" 200 "), "{status}");
    let closed = closed_after(&mut idle, Instant::now(), Duration::from_secs(5))
        .await
        .expect("an idle keep-alive connection open after 5 s");
    println!(
        "idle keep-alive connection closed {closed:?} after its answer (keep-alive timeout 1 s)"
    );
    assert!((800..=1800).contains(&closed.as_millis()), "{closed:?}");

    // A request every 500 ms for 4 s, past both timeouts: every one answered on one connection,
    // which is then closed a keep-alive timeout after the last.
    let mut busy = TcpStream::connect(addr).await.unwrap();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(4) {
        let (status, _) = exchange(&mut busy, HEALTH).await;
        assert!(
            status.contains(" 200 "),
            "{status} after {:?}",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let closed = closed_after(&mut busy, Instant::now(), Duration::from_secs(5))
        .await
        .expect("closed after its last request");
    assert!(closed.as_millis() <= 1300, "{closed:?}");

    // An answer slower (2.5 s, a booking) than the keep-alive timeout is not cut, and its
    // connection is still open for the next request.
    let token = common::hs256_token(
        common::DEMO_SECRET,
        common::DEMO_ISSUER,
        common::DEMO_AUDIENCE,
        "prv_1",
        "doctor",
    );
    let body = r#"{"slot_id":"slot_none","patient_id":"pat_1","reason":"checkup"}"#;
    let booking = format!(
        "POST /api/v2/appointments HTTP/1.1\r\nHost: demo\r\nAuthorization: Bearer {token}\r\n\
         Idempotency-Key: serving-test-1\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut slow = TcpStream::connect(addr).await.unwrap();
    let asked = Instant::now();
    let (status, answer) = exchange(&mut slow, &booking).await;
    let took = asked.elapsed();
    println!("a 2.5 s answer (keep-alive timeout 1 s): {status} after {took:?}");
    assert!(
        took >= Duration::from_millis(2500),
        "{took:?}: {status} {answer}"
    );
    assert!(status.contains(" 422 "), "{status} {answer}");
    let (status, _) = exchange(&mut slow, HEALTH).await;
    assert!(status.contains(" 200 "), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_connection_cap_a_new_client_waits_until_one_closes() {
    let _serial = SERIAL.lock().await;
    let (_demo, addr) = start(
        "server",
        "/health",
        &[
            "--max-connections",
            "8",
            "--header-read-timeout",
            "30",
            "--keep-alive-timeout",
            "30",
        ],
    )
    .await;
    // The start-up probe's connection may still hold a place for a moment.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut held = Vec::new();
    for _ in 0..8 {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let answer = tokio::time::timeout(Duration::from_secs(5), exchange(&mut stream, HEALTH));
        let (status, _) = answer.await.expect("one of the first 8 connections served");
        assert!(status.contains(" 200 "), "{status}");
        held.push(stream);
    }
    // The ninth connects (the kernel's backlog holds it) but is not served.
    let mut ninth = TcpStream::connect(addr).await.unwrap();
    ninth.write_all(HEALTH.as_bytes()).await.unwrap();
    let mut buf = [0u8; 1024];
    let early = tokio::time::timeout(Duration::from_millis(1500), ninth.read(&mut buf)).await;
    assert!(early.is_err(), "served beyond the cap: {early:?} {STALE}");
    // One held connection closes: the ninth is served at once.
    drop(held.remove(0));
    let closed = Instant::now();
    let n = tokio::time::timeout(Duration::from_secs(5), ninth.read(&mut buf))
        .await
        .expect("the ninth connection served once a place freed")
        .unwrap();
    let waited = closed.elapsed();
    println!("at the cap of 8, the ninth connection was served {waited:?} after one closed");
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    assert!(waited < Duration::from_secs(1), "{waited:?}");
}

/// `connections` connections to `addr`, each sending a head of `head_bytes` (header lines
/// without the blank line ending the head) and then nothing; each one's first answer line (a
/// 431, say) or "" when closed without one, and when that came after the head was sent.
async fn unfinished_heads(
    addr: SocketAddr,
    connections: usize,
    head_bytes: usize,
    hold: Duration,
) -> Vec<(String, Option<Duration>)> {
    let mut tasks = Vec::new();
    for i in 0..connections {
        tasks.push(tokio::spawn(async move {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            let mut head =
                format!("GET /health HTTP/1.1\r\nHost: demo\r\nX-Id: {i}\r\n").into_bytes();
            let line = format!("X-Pad: {}\r\n", "a".repeat(1000));
            while head.len() + line.len() <= head_bytes {
                head.extend_from_slice(line.as_bytes());
            }
            // The server may answer and close before it has read everything: a failed write
            // is one of the outcomes.
            let _ = stream.write_all(&head).await;
            let sent = Instant::now();
            let mut answer = Vec::new();
            let mut buf = [0u8; 4096];
            let deadline = tokio::time::Instant::from_std(sent + hold);
            let closed = loop {
                match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
                    Err(_) => break None,
                    Ok(Ok(0) | Err(_)) => break Some(sent.elapsed()),
                    Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
                }
            };
            let status = String::from_utf8_lossy(&answer)
                .lines()
                .next()
                .unwrap_or_default()
                .to_string();
            // Held open (by the client) until every connection has had its say.
            (status, closed, stream)
        }));
    }
    let mut outcomes = Vec::new();
    let mut streams = Vec::new();
    for task in tasks {
        let (status, closed, stream) = task.await.unwrap();
        outcomes.push((status, closed));
        streams.push(stream);
    }
    outcomes
}

const MAX_HEADER_BYTES: u64 = 65_536;

/// The growth of the demo's resident memory the test allows for `connections` heads: each may
/// hold a read buffer of up to `--max-header-bytes`, which the allocator may round to twice that
/// (the buffer grows by doubling), plus 8 MiB for everything else (tasks, the allocator's
/// arenas of the worker threads).
fn allowed_growth(connections: u64) -> u64 {
    connections * 2 * MAX_HEADER_BYTES + 8 * 1024 * 1024
}

/// The demo's resident memory once 20 requests have warmed it up (its threads, buffers and
/// allocator arenas in use), the baseline of the memory tests.
async fn resident_after_warm_up(demo: &common::Example, addr: SocketAddr) -> u64 {
    let client = reqwest::Client::new();
    for _ in 0..20 {
        client
            .get(format!("http://{addr}/health"))
            .send()
            .await
            .unwrap();
    }
    proc_status_bytes(demo.pid(), "VmRSS")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_unfinished_heads_are_refused_and_memory_stays_bounded() {
    let _serial = SERIAL.lock().await;
    // The default --max-header-bytes (64 KiB); the header-read timeout longer than the test
    // waits, so whatever closes these connections is the size limit.
    let (demo, addr) = start("server", "/health", &["--header-read-timeout", "30"]).await;
    let before = resident_after_warm_up(&demo, addr).await;
    let outcomes = unfinished_heads(addr, 200, 390_000, Duration::from_secs(10)).await;
    let after = proc_status_bytes(demo.pid(), "VmRSS");
    let peak = proc_status_bytes(demo.pid(), "VmHWM");
    let refused = outcomes
        .iter()
        .filter(|(status, _)| status.starts_with("HTTP/1.1 431"))
        .count();
    let slowest = outcomes.iter().filter_map(|(_, closed)| *closed).max();
    let growth = after.saturating_sub(before);
    let peak_growth = peak.saturating_sub(before);
    println!(
        "200 unfinished 390 KB heads: {refused} answered 431, all closed within {slowest:?}; \
         demo VmRSS {:.1} MiB -> {:.1} MiB (+{:.1} MiB), peak VmHWM +{:.1} MiB (bound {:.1} MiB)",
        mib(before),
        mib(after),
        mib(growth),
        mib(peak_growth),
        mib(allowed_growth(200))
    );
    for (status, closed) in &outcomes {
        assert!(
            closed.is_some_and(|c| c < Duration::from_secs(5)),
            "a 390 KB head was held open ({status:?}) {STALE}"
        );
        assert!(
            status.is_empty() || status.starts_with("HTTP/1.1 431"),
            "{status}"
        );
    }
    assert!(refused > 0, "no 431 at all");
    assert!(
        peak_growth < allowed_growth(200),
        "+{} MiB",
        mib(peak_growth)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heads_just_under_the_limit_are_held_in_bounded_memory_until_the_header_timeout() {
    let _serial = SERIAL.lock().await;
    let (demo, addr) = start("server", "/health", &["--header-read-timeout", "4"]).await;
    let before = resident_after_warm_up(&demo, addr).await;
    let pid = demo.pid();
    // Sample the resident memory while the heads are held.
    let sampler = tokio::spawn(async move {
        let mut most = 0;
        for _ in 0..30 {
            most = most.max(proc_status_bytes(pid, "VmRSS"));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        most
    });
    let outcomes = unfinished_heads(addr, 200, 60_000, Duration::from_secs(8)).await;
    let held = sampler.await.unwrap();
    let peak = proc_status_bytes(demo.pid(), "VmHWM");
    let growth = held.saturating_sub(before);
    let peak_growth = peak.saturating_sub(before);
    let closes: Vec<Duration> = outcomes.iter().filter_map(|(_, c)| *c).collect();
    println!(
        "200 unfinished 60 KB heads held: demo VmRSS {:.1} MiB -> {:.1} MiB while held (+{:.1} MiB), \
         peak VmHWM +{:.1} MiB (bound {:.1} MiB); closed {:?} to {:?} after sending (header-read timeout 4 s)",
        mib(before),
        mib(held),
        mib(growth),
        mib(peak_growth),
        mib(allowed_growth(200)),
        closes.iter().min(),
        closes.iter().max()
    );
    assert_eq!(closes.len(), 200, "some held past the header-read timeout");
    for (status, _) in &outcomes {
        assert!(status.is_empty(), "answered: {status}");
    }
    assert!(
        peak_growth < allowed_growth(200),
        "+{} MiB",
        mib(peak_growth)
    );
}

/// How many connections to local port `port` are established (the server's ends, from
/// `/proc/net/tcp`).
fn established(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let local = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // local_address, rem_address, st (01: ESTABLISHED)
            fields.len() > 3 && fields[1].ends_with(&local) && fields[3] == "01"
        })
        .count()
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hyper_example_closes_silent_and_idle_connections() {
    let _serial = SERIAL.lock().await;
    let (_hyper, addr) = start(
        "hyper",
        "/",
        &["--header-read-timeout", "2", "--keep-alive-timeout", "1"],
    )
    .await;
    let mut silent = TcpStream::connect(addr).await.unwrap();
    let closed = closed_after(&mut silent, Instant::now(), Duration::from_secs(5))
        .await
        .unwrap_or_else(|| panic!("a silent connection open after 5 s {STALE}"));
    println!("hyper example: silent connection closed after {closed:?} (header-read timeout 2 s)");
    assert!((1800..=3000).contains(&closed.as_millis()), "{closed:?}");

    let mut idle = TcpStream::connect(addr).await.unwrap();
    // Refused (401, no token), but answered: a whole exchange.
    let (status, _) = exchange(&mut idle, "GET /nowhere HTTP/1.1\r\nHost: hyper\r\n\r\n").await;
    assert!(status.starts_with("HTTP/1.1 "), "{status}");
    let closed = closed_after(&mut idle, Instant::now(), Duration::from_secs(5))
        .await
        .expect("an idle keep-alive connection open after 5 s");
    println!(
        "hyper example: idle keep-alive connection closed {closed:?} after its answer (keep-alive timeout 1 s)"
    );
    assert!((800..=1800).contains(&closed.as_millis()), "{closed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grpc_example_closes_silent_connections_and_its_clients_reconnect() {
    let _serial = SERIAL.lock().await;
    let (_grpc, addr) = start(
        "grpc",
        "",
        &["--header-read-timeout", "1", "--keep-alive-timeout", "1"],
    )
    .await;
    // Nothing sent, not even HTTP/2's preface: closed at the header-read timeout, plus at most
    // the second of grace a graceful HTTP/2 close is given.
    let mut silent = TcpStream::connect(addr).await.unwrap();
    let closed = closed_after(&mut silent, Instant::now(), Duration::from_secs(5))
        .await
        .unwrap_or_else(|| panic!("a silent connection open after 5 s {STALE}"));
    println!("gRPC example: silent connection closed after {closed:?} (header-read timeout 1 s)");
    assert!((900..=2500).contains(&closed.as_millis()), "{closed:?}");

    // A real client's channel is closed (GOAWAY) once idle, and calls again on a new one.
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    for _ in 0..2 {
        let mut grpc = tonic::client::Grpc::new(channel.clone());
        grpc.ready().await.unwrap();
        let answer = grpc
            .unary::<(), (), _>(
                tonic::Request::new(()),
                http::uri::PathAndQuery::from_static("/patients.Patients/Get"),
                tonic_prost::ProstCodec::default(),
            )
            .await
            .unwrap_err();
        assert_eq!(answer.code(), tonic::Code::Unauthenticated, "{answer:?}");
        assert_eq!(established(addr.port()), 1, "the channel's connection");
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert_eq!(established(addr.port()), 0, "closed once idle");
    }
}

/// The demo started by a shell that first lowers its open-file limit to `nofile`.
struct Limited(std::process::Child);

impl Drop for Limited {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_file_descriptors_the_demo_keeps_accepting_once_some_close() {
    let _serial = SERIAL.lock().await;
    let port = common::free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let audit_log = std::env::temp_dir().join(format!("api-policy-serving-{port}/audit.log"));
    // A cap far above what 100 descriptors allow, so accept fails with EMFILE.
    let script = "ulimit -n 100 && exec \"$0\" \"$@\"";
    let child = std::process::Command::new("sh")
        .args(["-c", script])
        .arg(common::example_binary("server"))
        .args(["--addr", &addr.to_string(), "--header-read-timeout", "2"])
        .args(["--max-connections", "500", "--audit-log"])
        .arg(&audit_log)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut demo = Limited(child);
    let client = reqwest::Client::new();
    let health = || client.get(format!("http://{addr}/health")).send();
    let mut up = false;
    for _ in 0..100 {
        if health().await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(up, "the demo did not start");
    // 150 silent connections: the demo runs out of descriptors partway.
    let mut silent = Vec::new();
    for _ in 0..150 {
        silent.push(TcpStream::connect(addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let open_files = std::fs::read_dir(format!("/proc/{}/fd", demo.0.id()))
        .unwrap()
        .count();
    assert!(
        open_files >= 95,
        "only {open_files} descriptors open: no EMFILE"
    );
    assert!(demo.0.try_wait().unwrap().is_none(), "the demo exited");
    // Once the silent ones are closed (header-read timeout), it serves again: a new client,
    // whose connection waits in the backlog behind theirs.
    let started = Instant::now();
    let fresh = reqwest::Client::new();
    let served = loop {
        let request = fresh.get(format!("http://{addr}/health")).send();
        let answer = tokio::time::timeout(Duration::from_secs(5), request).await;
        if let Ok(Ok(response)) = answer {
            break response.status();
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "not served again after 15 s"
        );
    };
    println!(
        "out of descriptors (ulimit -n 100), served again after {:?}",
        started.elapsed()
    );
    assert_eq!(served, 200);
    assert!(demo.0.try_wait().unwrap().is_none(), "the demo exited");
    drop(silent);
}

/// An answer body of `left` chunks, one every `every`.
struct Ticks {
    left: u32,
    every: Duration,
    sleep: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl http_body::Body for Ticks {
    type Data = bytes::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, Self::Error>>> {
        if self.left == 0 {
            return std::task::Poll::Ready(None);
        }
        std::task::ready!(self.sleep.as_mut().poll(cx));
        let next = tokio::time::Instant::now() + self.every;
        self.sleep.as_mut().reset(next);
        self.left -= 1;
        let chunk = http_body::Frame::data(bytes::Bytes::from_static(b"tick"));
        std::task::Poll::Ready(Some(Ok(chunk)))
    }
}

/// Reads a chunked answer whole: its chunks' bytes, once the last (empty) chunk has come.
async fn read_chunked(stream: &mut TcpStream) -> (String, usize) {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    while !data.ends_with(b"\r\n0\r\n\r\n") {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(
            n > 0,
            "closed mid-answer: {}",
            String::from_utf8_lossy(&data)
        );
        data.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&data).to_string();
    let ticks = text.matches("tick").count();
    (text, ticks)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_streaming_answer_is_not_cut_by_the_keep_alive_timeout_nor_by_shutdown() {
    let _serial = SERIAL.lock().await;
    let limits = serving::Limits::new(
        Duration::from_secs(1),
        Duration::from_secs(1),
        serving::DEFAULT_MAX_HEADER_BYTES,
        16,
    )
    .unwrap();
    // Five chunks 500 ms apart: 2.5 s, past both timeouts.
    let service = tower::service_fn(|_request: http::Request<hyper::body::Incoming>| async {
        let every = Duration::from_millis(500);
        let body = Ticks {
            left: 5,
            every,
            sleep: Box::pin(tokio::time::sleep(every)),
        };
        Ok::<_, std::convert::Infallible>(http::Response::new(body))
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serving::serve(
        listener,
        limits,
        serving::Protocols::Http1AndH2c,
        move |_peer| service,
        async {
            let _ = stopped.await;
        },
    ));

    let mut stream = TcpStream::connect(addr).await.unwrap();
    let asked = Instant::now();
    stream
        .write_all(b"GET /ticks HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let (text, ticks) = read_chunked(&mut stream).await;
    let took = asked.elapsed();
    println!("a 2.5 s streaming answer (keep-alive timeout 1 s) ended whole after {took:?}");
    assert_eq!(ticks, 5, "{text}");
    assert!(took >= Duration::from_millis(2500), "{took:?}");
    // The keep-alive timeout counts from the answer's end.
    let closed = closed_after(&mut stream, Instant::now(), Duration::from_secs(5))
        .await
        .expect("closed once idle");
    assert!((800..=1500).contains(&closed.as_millis()), "{closed:?}");

    // Shutdown while an answer streams: it ends whole, then the server returns.
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /ticks HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    stop.send(()).unwrap();
    let (text, ticks) = read_chunked(&mut stream).await;
    assert_eq!(ticks, 5, "{text}");
    let closed = closed_after(&mut stream, Instant::now(), Duration::from_secs(2)).await;
    assert!(
        closed.is_some_and(|c| c < Duration::from_millis(300)),
        "{closed:?}"
    );
    tokio::time::timeout(Duration::from_secs(2), server)
        .await
        .expect("serve returns once the answer has ended")
        .unwrap();
}
