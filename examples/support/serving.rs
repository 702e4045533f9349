//! How the examples serve: hyper-util's connection builder with the connection-level limits a
//! tower layer cannot set, because they act before there is a request to wrap: how long a client
//! may take to send a request head, how long an idle keep-alive connection stays open, how big a
//! head may grow, and how many connections are open at once.

use std::error::Error;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore, watch};
use tokio::time::Instant;
use tower::ServiceExt;

/// `--header-read-timeout` (seconds) unless given.
pub const DEFAULT_HEADER_READ_TIMEOUT_SECS: u64 = 10;
/// `--keep-alive-timeout` (seconds) unless given.
pub const DEFAULT_KEEP_ALIVE_TIMEOUT_SECS: u64 = 5;
/// `--max-header-bytes` unless given: room for large tokens and cookies, a sixth of hyper's
/// default read buffer (~400 KB).
pub const DEFAULT_MAX_HEADER_BYTES: usize = 64 * 1024;
/// The smallest `--max-header-bytes`: hyper's HTTP/1 read buffer cannot be smaller.
pub const MIN_MAX_HEADER_BYTES: usize = 8192;

/// After a graceful close, how long a connection with nothing in flight may take to go: HTTP/2
/// waits for the client's answer to a PING before its last GOAWAY, and a connection still in
/// its HTTP/2 handshake (a client that never sent its preface) does not close on its own.
const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// How long to wait before accepting again after `accept` failed (out of file descriptors, say).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The connection-level limits, each a command-line flag of the examples.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// How long a client may take to send a whole request head (also the first one, counted
    /// from the connection's start). On HTTP/1, hyper's timer also runs while an idle
    /// keep-alive connection waits for its next request, so it bounds that wait too.
    pub header_read_timeout: Duration,
    /// How long a connection with no request in flight stays open after its last answer.
    pub keep_alive_timeout: Duration,
    /// The largest request head: HTTP/1's read buffer (a larger head is answered 431 and the
    /// connection closed) and HTTP/2's header list.
    pub max_header_bytes: usize,
    /// How many connections are open at once; at the cap, new clients wait in the kernel's
    /// backlog until one closes.
    pub max_connections: usize,
}

impl Limits {
    /// The limits, refusing what cannot work: a zero timeout or cap, a header buffer hyper
    /// cannot use.
    pub fn new(
        header_read_timeout: Duration,
        keep_alive_timeout: Duration,
        max_header_bytes: usize,
        max_connections: usize,
    ) -> Result<Self, String> {
        if header_read_timeout.is_zero() || keep_alive_timeout.is_zero() {
            return Err("the header-read and keep-alive timeouts must be above zero".into());
        }
        if !(MIN_MAX_HEADER_BYTES..=u32::MAX as usize).contains(&max_header_bytes) {
            return Err(format!(
                "--max-header-bytes must be at least {MIN_MAX_HEADER_BYTES}"
            ));
        }
        if !(1..=u32::MAX as usize).contains(&max_connections) {
            return Err("--max-connections must be at least 1".into());
        }
        Ok(Self {
            header_read_timeout,
            keep_alive_timeout,
            max_header_bytes,
            max_connections,
        })
    }
}

/// The default `--max-connections`: 1024, or fewer when the open-file limit (`ulimit -n`) leaves
/// less than that once 64 descriptors are kept for everything else (the listener, logs, Redis).
pub fn default_max_connections() -> usize {
    // Linux only; elsewhere (or when unlimited) the plain default.
    let soft_limit = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|limits| {
            let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
            line.split_whitespace().nth(3)?.parse::<usize>().ok()
        });
    soft_limit.map_or(1024, |n| n.saturating_sub(64).clamp(1, 1024))
}

/// Which protocols a connection may speak.
#[allow(dead_code, reason = "each example builds one of them")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocols {
    /// HTTP/1.1, and HTTP/2 without TLS (h2c) for clients that start with its preface.
    Http1AndH2c,
    /// HTTP/2 only, as gRPC needs.
    Http2Only,
}

/// Accepts connections on `listener` and serves each with the service `make_service` makes for
/// its peer address, within `limits`, until `shutdown` completes; then stops accepting, closes
/// every connection gracefully (answers in flight finish) and returns once all are gone.
pub async fn serve<M, S, B>(
    listener: TcpListener,
    limits: Limits,
    protocols: Protocols,
    make_service: M,
    shutdown: impl Future<Output = ()>,
) where
    M: Fn(SocketAddr) -> S,
    S: tower::Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn Error + Send + Sync>>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn Error + Send + Sync>>,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        // The read buffer holds the head until it is whole: this caps it (hyper answers 431).
        .max_buf_size(limits.max_header_bytes);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
    if protocols == Protocols::Http2Only {
        builder = builder.http2_only();
    }
    let builder = Arc::new(builder);
    // One permit per open connection, held by its task.
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let (stop, stopping) = watch::channel(false);
    let mut shutdown = pin!(shutdown);
    loop {
        // At the cap, wait for a connection to close before accepting another: meanwhile new
        // clients wait in the kernel's backlog, and are served as soon as a permit frees.
        let permit = tokio::select! {
            permit = Arc::clone(&permits).acquire_owned() => permit,
            () = &mut shutdown => break,
        };
        let Ok(permit) = permit else { break };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // EMFILE and the like pass as connections close: not a reason to stop.
                    tracing::warn!(%error, "accept failed; trying again shortly");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Answers are written whole: Nagle's algorithm would only delay their last segment.
        let _ = stream.set_nodelay(true);
        let service = make_service(peer);
        let builder = Arc::clone(&builder);
        let mut stopping = stopping.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let activity = Activity::default();
            let tracked = activity.clone();
            let service = hyper::service::service_fn(move |request| {
                let busy = tracked.start();
                let call = service.clone().oneshot(request);
                async move {
                    let response = call.await?;
                    // Busy until the answer's body is sent: a long stream is in flight too.
                    Ok::<_, S::Error>(response.map(|body| Tracked { body, _busy: busy }))
                }
            });
            // With upgrades: a WebSocket handshake (101) hands the connection over to its socket.
            let mut connection =
                pin!(builder.serve_connection_with_upgrades(TokioIo::new(stream), service));
            // hyper bounds the HTTP/1 head itself, but not a connection that sends nothing
            // (hyper-util is still reading it to tell HTTP/1 from HTTP/2) nor HTTP/2, and it
            // has no keep-alive timeout: this loop closes a connection idle past its limit.
            let mut closing_since = None;
            loop {
                let deadline = activity
                    .idle_since()
                    .map(|(since, served)| match closing_since {
                        Some(closing) => since.max(closing) + CLOSE_GRACE,
                        None if served => since + limits.keep_alive_timeout,
                        None => since + limits.header_read_timeout,
                    });
                let now = Instant::now();
                if deadline.is_some_and(|deadline| deadline <= now) {
                    if closing_since.is_some() {
                        // Nothing in flight and still open after the grace: drop it.
                        return;
                    }
                    // Idle HTTP/1 closes at once; HTTP/2 sends GOAWAY. An answer in flight
                    // (none here) would finish first.
                    connection.as_mut().graceful_shutdown();
                    closing_since = Some(now);
                    continue;
                }
                // While a request is in flight there is no deadline; its end wakes the loop
                // (the timer is only a backstop).
                let wake = deadline.unwrap_or(now + limits.keep_alive_timeout);
                tokio::select! {
                    result = connection.as_mut() => {
                        if let Err(error) = result {
                            tracing::debug!(%peer, %error, "connection ended with an error");
                        }
                        return;
                    }
                    () = tokio::time::sleep_until(wake) => {}
                    // A request ended: its keep-alive timeout starts now.
                    () = activity.0.ended.notified() => {}
                    _ = stopping.wait_for(|&stop| stop), if closing_since.is_none() => {
                        connection.as_mut().graceful_shutdown();
                        closing_since = Some(Instant::now());
                    }
                }
            }
        });
    }
    drop(listener);
    stop.send_replace(true);
    // Every permit back means every connection has closed.
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let _ = permits.acquire_many(all).await;
}

/// A connection's requests in flight, and since when it has had none.
#[derive(Clone)]
struct Activity(Arc<ActivityInner>);

struct ActivityInner {
    state: Mutex<ActivityState>,
    /// Wakes the connection's loop when a request ends.
    ended: Notify,
}

struct ActivityState {
    in_flight: usize,
    idle_since: Instant,
    served: bool,
}

impl Default for Activity {
    fn default() -> Self {
        Self(Arc::new(ActivityInner {
            state: Mutex::new(ActivityState {
                in_flight: 0,
                idle_since: Instant::now(),
                served: false,
            }),
            ended: Notify::new(),
        }))
    }
}

impl Activity {
    fn state(&self) -> std::sync::MutexGuard<'_, ActivityState> {
        self.0.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A request has started; it ends when the guard is dropped.
    fn start(&self) -> Busy {
        let mut state = self.state();
        state.in_flight += 1;
        state.served = true;
        Busy(self.clone())
    }

    /// Since when nothing has been in flight, and whether a request was ever served; `None`
    /// while a request is in flight.
    fn idle_since(&self) -> Option<(Instant, bool)> {
        let state = self.state();
        (state.in_flight == 0).then_some((state.idle_since, state.served))
    }
}

/// One request in flight, until dropped.
struct Busy(Activity);

impl Drop for Busy {
    fn drop(&mut self) {
        let mut state = self.0.state();
        state.in_flight -= 1;
        state.idle_since = Instant::now();
        drop(state);
        self.0.0.ended.notify_one();
    }
}

pin_project_lite::pin_project! {
    /// An answer's body, holding its request's [`Busy`] until it is sent (or dropped).
    struct Tracked<B> {
        #[pin]
        body: B,
        _busy: Busy,
    }
}

impl<B: Body> Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        self.project().body.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Completes on Ctrl-C; without a signal handler, never (the process is ended some other way).
pub async fn ctrl_c() {
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}
