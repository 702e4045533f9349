//! [`Audit`]: the service the layer wraps around the whole stack.

use std::borrow::Cow;
use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Instant;

use http::header::{CACHE_CONTROL, RETRY_AFTER, USER_AGENT};
use http::{HeaderValue, Request, Response, StatusCode};
use tower_service::Service;

use super::batch::RecordBatch;
use super::draft::Draft;
use super::policy::Config;
use super::queue::Refused;
use super::sink::AuditSink;
use crate::body::PolicyBody;
use crate::kit::{Answer, BoxFuture, Finish, Nothing, PolicyFuture, policy_future};
use crate::principal::Principal;
use crate::rejection::{Rejection, RequestShadow};

/// The audit service; built by [`AuditLayer`](super::AuditLayer).
#[derive(Debug, Clone)]
pub struct Audit<Si, S> {
    inner: S,
    sink: Si,
    config: Arc<Config>,
}

impl<Si, S> Audit<Si, S> {
    pub(crate) fn new(inner: S, sink: Si, config: Arc<Config>) -> Self {
        Self {
            inner,
            sink,
            config,
        }
    }
}

/// What a record knows before the inner service answers.
struct Started {
    draft: Box<Draft>,
    began: Instant,
}

impl<Si, S, ReqBody, ResBody> Service<Request<ReqBody>> for Audit<Si, S>
where
    Si: AuditSink,
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Send + 'static,
    S::Future: Send,
    S::Error: Send,
    ReqBody: Send + 'static,
    ResBody: Send + 'static,
{
    type Response = Response<PolicyBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<Si, S, ReqBody, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let config = self.config.clone();
        let Some(route) = config
            .coverage
            .routes
            .position(request.method(), request.uri().path())
        else {
            return ResponseFuture {
                inner: PolicyFuture::Calling {
                    future: self.inner.call(request),
                    stamp: None,
                    then: None,
                },
            };
        };
        let Started { mut draft, began } = start(&config, route, &mut request);
        let fail_closed = config.buffer.is_none();
        if fail_closed && !self.sink.is_healthy() {
            // The data must not leave unrecorded: refuse before the handler runs.
            let shadow = RequestShadow::of(&request);
            let mut response = unavailable(&config, &shadow, &draft.request_id);
            keep_out_of_caches(&config, route, &mut response);
            draft.status = response.status().as_u16();
            draft.refused_by = Some(Cow::Borrowed("audit_unavailable"));
            let canonical = draft.canonical(&config.coverage);
            // Still try: an unhealthy sink may be back by now, and then the refusal is on record.
            let (sink, counters) = (self.sink.clone(), config.counters.clone());
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move {
                    let written = write_one(&sink, canonical).await.is_ok();
                    let counter = if written {
                        &counters.written
                    } else {
                        &counters.failed
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                });
            }
            return ResponseFuture::new(PolicyFuture::answer(response));
        }
        // Only a fail-closed answer can be replaced by a 503 rendered for this request.
        let shadow = fail_closed.then(|| RequestShadow::of(&request));
        let request_id = draft.request_id.clone();
        // Armed from here until the answer is in: a client that hangs up cancels the handler,
        // and the guard then records the request as closed by the client (it may have changed
        // data before it was cancelled).
        let pending = Pending {
            draft: Some(draft),
            began,
            sink: self.sink.clone(),
            config,
        };
        let recording = Recording {
            pending,
            request_id,
            shadow,
            route,
        };
        ResponseFuture {
            inner: PolicyFuture::Calling {
                future: self.inner.call(request),
                stamp: None,
                then: Some(recording),
            },
        }
    }
}

policy_future! {
    /// The response future of [`Audit`]: the inner service's call, then the record's delivery.
    pub struct ResponseFuture<Si, S, ReqBody, B> = PolicyFuture<S, ReqBody, B, Nothing, Recording<Si>>;
    where [Si: AuditSink, S: Service<Request<ReqBody>>]
    polls where [Si: AuditSink, S: Service<Request<ReqBody>, Response = Response<B>>, S::Error: Send + 'static, B: Send + 'static]
}

/// What a recorded request's future holds until the inner service answers.
pub(crate) struct Recording<Si: AuditSink> {
    pending: Pending<Si>,
    request_id: HeaderValue,
    shadow: Option<RequestShadow>,
    /// The PHI route, for its `Cache-Control`.
    route: usize,
}

impl<Si, B, E> Finish<B, E> for Recording<Si>
where
    Si: AuditSink,
    B: Send + 'static,
    E: Send + 'static,
{
    /// Finishes the record with the inner service's outcome and queues it: the answer now, or,
    /// when the record must wait (a fail-closed write, a full queue), a future of it.
    fn finish(
        mut self,
        outcome: Result<Response<B>, E>,
    ) -> Result<Answer<B, E>, BoxFuture<Answer<B, E>>> {
        let Some(mut draft) = self.pending.draft.take() else {
            return Ok(outcome.map(|r| r.map(PolicyBody::inner)));
        };
        let (config, sink) = (self.pending.config.clone(), self.pending.sink.clone());
        let response = match outcome {
            Ok(response) => response,
            Err(error) => {
                // The stack failed rather than answered: that is on record too.
                draft.status = 500;
                draft.refused_by = Some(Cow::Borrowed("service_error"));
                draft.latency_us = elapsed(self.pending.began);
                return Err(Box::pin(async move {
                    deliver(&config, &sink, draft).await;
                    Err(error)
                }));
            }
        };
        finish(&mut draft, self.pending.began, &response);
        let mut response = response.map(PolicyBody::inner);
        response
            .headers_mut()
            .entry(&config.request_id)
            .or_insert_with(|| self.request_id.clone());
        keep_out_of_caches(&config, self.route, &mut response);
        if let Some(delivered) = queue_now(&config, &draft) {
            return Ok(Ok(self.release(delivered, response)));
        }
        let canonical = draft.canonical(&config.coverage);
        // Let go before the wait: the draft shares the request's buffers.
        drop(draft);
        Err(Box::pin(async move {
            let delivered = deliver_waiting(&config, &sink, canonical).await;
            Ok(self.release(delivered, response))
        }))
    }
}

impl<Si: AuditSink> Recording<Si> {
    /// The answer once its record is delivered, or a 503 in its place when a fail-closed record
    /// could not be written.
    fn release<B>(
        self,
        delivered: bool,
        response: Response<PolicyBody<B>>,
    ) -> Response<PolicyBody<B>> {
        let config = &self.pending.config;
        if delivered || config.buffer.is_some() {
            return response;
        }
        tracing::error!(
            layer = "audit",
            sink = self.pending.sink.name(),
            "audit record not written; the answer is withheld (503)"
        );
        let shadow = self.shadow.unwrap_or_default();
        let mut response = unavailable(config, &shadow, &self.request_id);
        keep_out_of_caches(config, self.route, &mut response);
        response
    }
}

/// A record whose request has not been answered yet; written as closed by the client if the
/// request is dropped first.
struct Pending<Si: AuditSink> {
    /// Boxed, so the future that holds it stays small.
    draft: Option<Box<Draft>>,
    began: Instant,
    sink: Si,
    config: Arc<Config>,
}

impl<Si: AuditSink> Drop for Pending<Si> {
    fn drop(&mut self) {
        let Some(mut draft) = self.draft.take() else {
            return;
        };
        draft.status = 499;
        draft.refused_by = Some(Cow::Borrowed("client_closed_request"));
        draft.latency_us = elapsed(self.began);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let (sink, config) = (self.sink.clone(), self.config.clone());
            runtime.spawn(async move {
                deliver(&config, &sink, draft).await;
            });
        }
    }
}

/// Hands the record to the sink (fail-closed: waits until it is durable) or to the buffer;
/// whether a fail-closed write succeeded.
async fn deliver<Si: AuditSink>(config: &Config, sink: &Si, draft: Box<Draft>) -> bool {
    match queue_now(config, &draft) {
        Some(delivered) => delivered,
        None => {
            let canonical = draft.canonical(&config.coverage);
            // Let go before the wait: the draft shares the request's buffers.
            drop(draft);
            deliver_waiting(config, sink, canonical).await
        }
    }
}

thread_local! {
    /// Where a request's record is formatted before it joins the queue: one buffer per thread,
    /// reused, so a record costs no allocation of its own.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// The most a thread's [`SCRATCH`] keeps between records: one odd record with a huge URI
/// should not hold its size for the life of the thread.
const SCRATCH_KEPT: usize = 16 * 1024;

/// What a buffered layer does without waiting: queue the record, or drop it when the queue is
/// full and the layer drops rather than waits. `None` when the record must wait: a fail-closed
/// write, or a full queue.
fn queue_now(config: &Config, draft: &Draft) -> Option<bool> {
    let (queue, drop_when_full) = config.buffer.as_ref()?;
    let pushed = SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
        Ok(mut scratch) => {
            scratch.clear();
            draft.append_canonical(&config.coverage, &mut scratch);
            let pushed = queue.try_push(&scratch);
            if scratch.capacity() > SCRATCH_KEPT {
                *scratch = Vec::new();
            }
            pushed
        }
        // Only a record formatted inside another's formatting would find it taken.
        Err(_) => queue.try_push(&draft.canonical(&config.coverage)),
    });
    match pushed {
        Ok(depth) => crate::metrics::audit_queue_depth(depth),
        Err(Refused::Full) if !drop_when_full => return None,
        Err(Refused::Full) => {
            config.counters.dropped.fetch_add(1, Ordering::Relaxed);
            crate::metrics::decision!("audit", "dropped");
            crate::metrics::audit_queue_depth(queue.capacity());
            tracing::warn!(layer = "audit", "audit buffer full; a record was dropped");
        }
        Err(Refused::Closed) => writer_gone(config),
    }
    Some(true)
}

/// The waiting half of [`deliver`]: a fail-closed write until it is durable, or a place in a
/// full queue (back-pressure).
async fn deliver_waiting<Si: AuditSink>(config: &Config, sink: &Si, canonical: Vec<u8>) -> bool {
    match &config.buffer {
        None => {
            let began = Instant::now();
            let written = write_one(sink, canonical).await;
            crate::metrics::audit_write(sink.name(), began.elapsed().as_secs_f64());
            match written {
                Ok(()) => {
                    config.counters.written.fetch_add(1, Ordering::Relaxed);
                    crate::metrics::decision!("audit", "written");
                    true
                }
                Err(error) => {
                    config.counters.failed.fetch_add(1, Ordering::Relaxed);
                    crate::metrics::decision!("audit", "failed");
                    tracing::error!(layer = "audit", sink = sink.name(), %error, "audit write failed");
                    false
                }
            }
        }
        Some((queue, _)) => {
            match queue.push(&canonical).await {
                Ok(depth) => crate::metrics::audit_queue_depth(depth),
                Err(_) => writer_gone(config),
            }
            true
        }
    }
}

/// One record, given as its canonical bytes, written on its own (a fail-closed write).
async fn write_one<Si: AuditSink>(sink: &Si, canonical: Vec<u8>) -> Result<(), super::SinkError> {
    super::sink::write_alone(sink, RecordBatch::of_canonical(canonical)).await
}

fn writer_gone(config: &Config) {
    config.counters.failed.fetch_add(1, Ordering::Relaxed);
    crate::metrics::decision!("audit", "failed");
    tracing::error!(
        layer = "audit",
        "the audit writer is gone; a record is lost"
    );
}

fn elapsed(began: Instant) -> u64 {
    u64::try_from(began.elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// The record's fields known from the request, and the request id (taken or made, and passed
/// on to the inner service).
fn start<B>(config: &Arc<Config>, route: usize, request: &mut Request<B>) -> Started {
    let request_id = request
        .headers()
        .get(&config.request_id)
        .filter(|v| v.len() <= 128 && v.as_bytes().iter().all(u8::is_ascii_graphic))
        .cloned()
        .unwrap_or_else(|| {
            // Shared, so the copies on the request, the answer and the record cost nothing.
            crate::header_value::shared(crate::owner::unique_hex())
                .unwrap_or_else(|| HeaderValue::from_static("unknown"))
        });
    request
        .headers_mut()
        .insert(config.request_id.clone(), request_id.clone());
    let draft = Draft {
        route,
        micros: config.clock.now_micros(),
        request_id,
        method: request.method().clone(),
        uri: request.uri().clone(),
        source_ip: config
            .proxies
            .client_of(request.headers(), request.extensions()),
        user_agent: request.headers().get(USER_AGENT).cloned(),
        principal: None,
        status: 0,
        refused_by: None,
        latency_us: 0,
    };
    Started {
        draft: Box::new(draft),
        began: Instant::now(),
    }
}

/// The fields the answer tells: status, who (the principal an inner auth layer copied to the
/// response), which policy refused, how long it took.
fn finish<B>(draft: &mut Draft, began: Instant, response: &Response<B>) {
    draft.status = response.status().as_u16();
    draft.latency_us = elapsed(began);
    draft.principal = response.extensions().get::<Principal>().cloned();
    draft.refused_by = response
        .extensions()
        .get::<Rejection>()
        .map(|r| r.error.clone());
}

/// How many fields a recorded answer gets at most: the request id and `Cache-Control`.
pub(crate) const ANSWER_FIELDS: usize = 2;

/// Gives a PHI route's answer the route's `Cache-Control` when it states none: patient data
/// must not be kept by a shared cache that guesses its freshness. A 304 carries what its 200
/// would: the same value, set by the handler or the conditional layer, or this one.
fn keep_out_of_caches<B>(config: &Config, route: usize, response: &mut Response<B>) {
    if let Some(value) = config
        .coverage
        .routes
        .at(route)
        .and_then(|r| r.value.cache_control.as_ref())
    {
        response
            .headers_mut()
            .entry(CACHE_CONTROL)
            .or_insert_with(|| value.clone());
    }
}

fn unavailable<B>(
    config: &Config,
    shadow: &RequestShadow,
    request_id: &HeaderValue,
) -> Response<PolicyBody<B>> {
    let rejection = Rejection::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "audit_unavailable",
        "This data is released only once its access is recorded, and the audit log cannot record it now; retry shortly.",
    )
    .with_header(RETRY_AFTER, HeaderValue::from_static("1"))
    .with_header(config.request_id.clone(), request_id.clone());
    config.renderer.respond(rejection, &shadow.context())
}
