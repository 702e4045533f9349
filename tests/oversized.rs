//! Oversized input over a real connection: a body over the limit is refused with 413 before it is
//! read (announced) or after no more than the limit of it (streamed), while the client is still
//! sending; headers too large for the server get 431, and policy headers over their own limits a
//! problem answer that names what is wrong. Requests are written byte by byte on a TCP socket, as
//! a hostile client would, to an axum server behind the composed stack.
#![cfg(all(feature = "memory", feature = "jwt", feature = "axum"))]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use api_policy::backend::MemoryBackend;
use api_policy::stack::StackConfig;
use axum::Router;
use axum::routing::post;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The largest request body the idempotency layer reads.
const BODY_LIMIT: usize = 64 * 1024;
/// How long any answer here may take: every refusal is immediate.
const PROMPT: Duration = Duration::from_secs(5);

/// A server on a free loopback port: the stack the hostile-input tests drive (JWT optional, a rate
/// limit, versioning), with idempotency keys on `POST /orders`, whose handler counts its runs.
async fn serve() -> (String, Arc<AtomicUsize>) {
    let config: StackConfig = toml::from_str(&format!(
        "{}\n[idempotency]\nrequire = [\"POST /orders\"]\nmax_request_bytes = {BODY_LIMIT}\n",
        include_str!("data/hostile_stack.toml")
    ))
    .unwrap_or_else(|e| panic!("the configuration parses: {e}"));
    let stack = config
        .build(&MemoryBackend::new())
        .unwrap_or_else(|e| panic!("the configuration builds: {e}"));
    let runs = Arc::new(AtomicUsize::new(0));
    let counted = runs.clone();
    let app = Router::new()
        .route(
            "/orders",
            post(move |body: axum::body::Bytes| {
                counted.fetch_add(1, Ordering::SeqCst);
                async move { format!("{} bytes", body.len()) }
            }),
        )
        .layer(stack);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback listener");
    let addr = listener.local_addr().expect("its address").to_string();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, runs)
}

/// An answer's status code and the rest of what was read of it.
struct Answer {
    status: u16,
    text: String,
}

/// Reads an answer from `reader` until the connection closes or its body has arrived.
async fn read_answer(reader: &mut (impl AsyncReadExt + Unpin)) -> Answer {
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 8192];
    let read = tokio::time::timeout(PROMPT, async {
        loop {
            match reader.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => bytes.extend_from_slice(&chunk[..n]),
            }
            if answer_complete(&bytes) {
                break;
            }
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "no whole answer within {PROMPT:?}; read so far: {}",
        String::from_utf8_lossy(&bytes)
    );
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP/1.1 answer: {text:?}"));
    Answer { status, text }
}

/// Whether `bytes` hold a head and as much body as its `content-length` announces.
fn answer_complete(bytes: &[u8]) -> bool {
    let text = String::from_utf8_lossy(bytes);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    head.lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.trim().parse::<usize>().ok())
        .is_some_and(|length| body.len() >= length)
}

async fn connect(addr: &str) -> TcpStream {
    TcpStream::connect(addr).await.expect("the server accepts")
}

#[tokio::test]
async fn an_announced_oversized_body_is_413_before_a_byte_of_it_is_sent() {
    let (addr, runs) = serve().await;
    let mut stream = connect(&addr).await;
    // A gigabyte announced, none of it sent: an answer proves the server did not wait for it.
    let head = format!(
        "POST /orders HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n\
         idempotency-key: big-1\r\ncontent-length: {}\r\n\r\n",
        1u64 << 30
    );
    stream
        .write_all(head.as_bytes())
        .await
        .expect("the head is sent");
    let answer = read_answer(&mut stream).await;
    assert_eq!(answer.status, 413, "{}", answer.text);
    assert!(
        answer.text.contains("\"request_body_too_large\""),
        "{}",
        answer.text
    );
    assert_eq!(runs.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_streamed_oversized_body_is_413_while_the_client_is_still_sending() {
    let (addr, runs) = serve().await;
    let (mut reader, mut writer) = connect(&addr).await.into_split();
    let head = format!(
        "POST /orders HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n\
         idempotency-key: big-2\r\ntransfer-encoding: chunked\r\n\r\n"
    );
    writer
        .write_all(head.as_bytes())
        .await
        .expect("the head is sent");
    // 256 MiB in chunks of 8 KiB: far more than the socket buffers hold, so the sender can only
    // finish if the server reads it all.
    const TOTAL: usize = 256 << 20;
    let sent = Arc::new(AtomicUsize::new(0));
    let sending = {
        let sent = sent.clone();
        tokio::spawn(async move {
            let mut chunk = format!("{:x}\r\n", 8192).into_bytes();
            chunk.extend_from_slice(&[b'x'; 8192]);
            chunk.extend_from_slice(b"\r\n");
            while sent.load(Ordering::SeqCst) < TOTAL {
                if writer.write_all(&chunk).await.is_err() {
                    return;
                }
                sent.fetch_add(8192, Ordering::SeqCst);
            }
            let _ = writer.write_all(b"0\r\n\r\n").await;
        })
    };
    let answer = read_answer(&mut reader).await;
    let sent_by_then = sent.load(Ordering::SeqCst);
    sending.abort();
    assert_eq!(answer.status, 413, "{}", answer.text);
    assert!(
        answer.text.contains("\"request_body_too_large\""),
        "{}",
        answer.text
    );
    assert!(
        sent_by_then < TOTAL,
        "the answer came only after the whole body was sent"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_body_within_the_limit_still_reaches_the_handler() {
    let (addr, runs) = serve().await;
    let mut stream = connect(&addr).await;
    let body = "x".repeat(BODY_LIMIT);
    let request = format!(
        "POST /orders HTTP/1.1\r\nhost: {addr}\r\nidempotency-key: fits\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.expect("sent");
    let answer = read_answer(&mut stream).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert!(answer.text.ends_with(&format!("{BODY_LIMIT} bytes")));
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

/// Sends a request head with these extra header lines and reads the answer, while the head
/// may still be on its way (a server that refuses it need not read it all).
async fn answer_to_head(addr: &str, extra: &str) -> Answer {
    let (mut reader, mut writer) = connect(addr).await.into_split();
    let head = format!(
        "POST /orders HTTP/1.1\r\nhost: {addr}\r\n{extra}content-length: 2\r\nconnection: close\r\n\r\n{{}}"
    );
    let sending = tokio::spawn(async move {
        let _ = writer.write_all(head.as_bytes()).await;
        writer
    });
    let answer = read_answer(&mut reader).await;
    sending.abort();
    answer
}

#[tokio::test]
async fn headers_too_large_for_the_server_are_431() {
    let (addr, runs) = serve().await;
    let one_huge = format!(
        "idempotency-key: k1\r\nx-padding: {}\r\n",
        "a".repeat(1 << 20)
    );
    let answer = answer_to_head(&addr, &one_huge).await;
    assert_eq!(answer.status, 431, "{}", answer.text);
    let many: String = (0..500).map(|i| format!("x-h{i}: {i}\r\n")).collect();
    let many = format!("idempotency-key: k2\r\n{many}");
    let answer = answer_to_head(&addr, &many).await;
    assert_eq!(answer.status, 431, "{}", answer.text);
    assert_eq!(runs.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn policy_headers_over_their_limits_get_a_problem_naming_them() {
    let (addr, runs) = serve().await;
    // Longer than Idempotency-Key's 255 characters, well within the server's header room.
    let key = format!("idempotency-key: {}\r\n", "k".repeat(4096));
    let answer = answer_to_head(&addr, &key).await;
    assert_eq!(answer.status, 400, "{}", answer.text);
    assert!(
        answer.text.contains("\"idempotency_key_invalid\""),
        "{}",
        answer.text
    );
    // A bearer token longer than the 8 KiB the JWT layer reads.
    // RFC 6750 section 3.1: a request the server cannot read a token from is invalid_request.
    let token = format!(
        "idempotency-key: k3\r\nauthorization: Bearer {}\r\n",
        "t".repeat(16 * 1024)
    );
    let answer = answer_to_head(&addr, &token).await;
    assert_eq!(answer.status, 400, "{}", answer.text);
    assert!(
        answer.text.contains("\"invalid_request\"") && answer.text.contains("too long"),
        "{}",
        answer.text
    );
    assert_eq!(runs.load(Ordering::SeqCst), 0);
}
