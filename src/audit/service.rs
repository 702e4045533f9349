//! [`Audit`]: the service the layer wraps around the whole stack.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Instant;

use http::header::{RETRY_AFTER, USER_AGENT};
use http::{HeaderValue, Request, Response, StatusCode};
use tokio::sync::mpsc;
use tower_service::Service;

use super::layer::{Config, PhiRoute};
use super::record::AuditRecord;
use super::sink::AuditSink;
use crate::body::PolicyBody;
use crate::future::ResponseFuture;
use crate::principal::{Principal, PrincipalKind};
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
    record: AuditRecord,
    began: Instant,
    request_id: HeaderValue,
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
    type Future = ResponseFuture<S::Future, ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let config = self.config.clone();
        let Some(hit) = config.routes.find(request.method(), request.uri().path()) else {
            return ResponseFuture::Passing {
                future: self.inner.call(request),
            };
        };
        let started = start(&config, hit.pattern, hit.value, &mut request);
        let fail_closed = config.buffer.is_none();
        if fail_closed && !self.sink.is_healthy() {
            // The data must not leave unrecorded: refuse before the handler runs.
            let shadow = RequestShadow::of(&request);
            let response = unavailable(&config, &shadow, &started.request_id);
            let mut record = started.record;
            record.status = response.status().as_u16();
            record.refused_by = Some("audit_unavailable".into());
            // Still try: an unhealthy sink may be back by now, and then the refusal is on record.
            let (sink, counters) = (self.sink.clone(), config.counters.clone());
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move {
                    let written = sink.write(record).await.is_ok();
                    let counter = if written {
                        &counters.written
                    } else {
                        &counters.failed
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                });
            }
            return ResponseFuture::answered(response);
        }
        // Only a fail-closed answer can be replaced by a 503 rendered for this request.
        let shadow = fail_closed.then(|| RequestShadow::of(&request));
        // Armed from here until the answer is in: a client that hangs up cancels the handler,
        // and the guard then records the request as closed by the client (it may have changed
        // data before it was cancelled).
        let mut pending = Pending {
            record: Some(Box::new(started.record)),
            began: started.began,
            sink: self.sink.clone(),
            config: config.clone(),
        };
        let request_id = started.request_id;
        // Called here rather than inside the future, the inner future boxed, every rarely taken
        // wait boxed: an async block keeps an awaited value twice (where it was captured, and
        // where it is polled), and inline the whole stack's future would be held twice in an
        // allocation too large for the allocator's fast path. Two small boxes cost less.
        let called = Box::pin(self.inner.call(request));
        let future = async move {
            let outcome = called.await;
            let Some(mut record) = pending.record.take() else {
                return outcome.map(|r| r.map(PolicyBody::inner));
            };
            let response = match outcome {
                Ok(response) => response,
                Err(error) => {
                    // The stack failed rather than answered: that is on record too.
                    record.status = 500;
                    record.refused_by = Some("service_error".into());
                    record.latency_us = elapsed(pending.began);
                    Box::pin(deliver(&config, &pending.sink, *record)).await;
                    return Err(error);
                }
            };
            finish(&mut record, pending.began, &response);
            let mut response = response.map(PolicyBody::inner);
            if !response.headers().contains_key(&config.request_id) {
                response
                    .headers_mut()
                    .insert(config.request_id.clone(), request_id.clone());
            }
            let delivered = match queue_now(&config, record) {
                Ok(delivered) => delivered,
                Err(record) => Box::pin(deliver_waiting(&config, &pending.sink, *record)).await,
            };
            if delivered || config.buffer.is_some() {
                Ok(response)
            } else {
                tracing::error!(
                    layer = "audit",
                    sink = pending.sink.name(),
                    "audit record not written; the answer is withheld (503)"
                );
                let shadow = shadow.unwrap_or_default();
                Ok(unavailable(&config, &shadow, &request_id))
            }
        };
        ResponseFuture::Working {
            future: Box::pin(future),
        }
    }
}

/// A record whose request has not been answered yet; written as closed by the client if the
/// request is dropped first.
struct Pending<Si: AuditSink> {
    /// Boxed, so the future that holds it stays small.
    record: Option<Box<AuditRecord>>,
    began: Instant,
    sink: Si,
    config: Arc<Config>,
}

impl<Si: AuditSink> Drop for Pending<Si> {
    fn drop(&mut self) {
        let Some(mut record) = self.record.take() else {
            return;
        };
        record.status = 499;
        record.refused_by = Some("client_closed_request".into());
        record.latency_us = elapsed(self.began);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let (sink, config) = (self.sink.clone(), self.config.clone());
            runtime.spawn(async move {
                deliver(&config, &sink, *record).await;
            });
        }
    }
}

/// Hands the record to the sink (fail-closed: waits until it is durable) or to the buffer;
/// whether a fail-closed write succeeded.
async fn deliver<Si: AuditSink>(config: &Config, sink: &Si, record: AuditRecord) -> bool {
    match queue_now(config, Box::new(record)) {
        Ok(delivered) => delivered,
        Err(record) => deliver_waiting(config, sink, *record).await,
    }
}

/// What a buffered layer does without waiting: queue the record, or drop it when the queue is
/// full and the layer drops rather than waits. `Err` gives the record back when it must wait:
/// a fail-closed write, or a full queue.
fn queue_now(config: &Config, record: Box<AuditRecord>) -> Result<bool, Box<AuditRecord>> {
    let Some((queue, drop_when_full)) = &config.buffer else {
        return Err(record);
    };
    match queue.try_send(*record) {
        Ok(()) => {}
        Err(mpsc::error::TrySendError::Full(record)) if !drop_when_full => {
            return Err(Box::new(record));
        }
        Err(mpsc::error::TrySendError::Full(_)) => {
            config.counters.dropped.fetch_add(1, Ordering::Relaxed);
            crate::metrics::decision("audit", "dropped");
            tracing::warn!(layer = "audit", "audit buffer full; a record was dropped");
        }
        Err(mpsc::error::TrySendError::Closed(_)) => writer_gone(config),
    }
    crate::metrics::audit_queue_depth(queue.max_capacity() - queue.capacity());
    Ok(true)
}

/// The waiting half of [`deliver`]: a fail-closed write until it is durable, or a place in a
/// full queue (back-pressure).
async fn deliver_waiting<Si: AuditSink>(config: &Config, sink: &Si, record: AuditRecord) -> bool {
    match &config.buffer {
        None => match timed(sink, record).await {
            Ok(()) => {
                config.counters.written.fetch_add(1, Ordering::Relaxed);
                crate::metrics::decision("audit", "written");
                true
            }
            Err(error) => {
                config.counters.failed.fetch_add(1, Ordering::Relaxed);
                crate::metrics::decision("audit", "failed");
                tracing::error!(layer = "audit", sink = sink.name(), %error, "audit write failed");
                false
            }
        },
        Some((queue, _)) => {
            if queue.send(record).await.is_err() {
                writer_gone(config);
            }
            crate::metrics::audit_queue_depth(queue.max_capacity() - queue.capacity());
            true
        }
    }
}

fn writer_gone(config: &Config) {
    config.counters.failed.fetch_add(1, Ordering::Relaxed);
    crate::metrics::decision("audit", "failed");
    tracing::error!(
        layer = "audit",
        "the audit writer is gone; a record is lost"
    );
}

/// A write, timed for the metrics.
pub(crate) async fn timed<Si: AuditSink>(
    sink: &Si,
    record: AuditRecord,
) -> Result<(), super::SinkError> {
    let began = Instant::now();
    let written = sink.write(record).await;
    crate::metrics::audit_write(sink.name(), began.elapsed().as_secs_f64());
    written
}

fn elapsed(began: Instant) -> u64 {
    u64::try_from(began.elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// The record's fields known from the request, and the request id (taken or made, and passed
/// on to the inner service).
fn start<B>(
    config: &Config,
    pattern: &crate::route::RoutePattern,
    route: &PhiRoute,
    request: &mut Request<B>,
) -> Started {
    let request_id = request
        .headers()
        .get(&config.request_id)
        .filter(|v| v.len() <= 128 && v.as_bytes().iter().all(u8::is_ascii_graphic))
        .cloned()
        .unwrap_or_else(|| {
            HeaderValue::from_bytes(&crate::owner::unique_hex())
                .unwrap_or_else(|_| HeaderValue::from_static("unknown"))
        });
    request
        .headers_mut()
        .insert(config.request_id.clone(), request_id.clone());
    let path = request.uri().path();
    let template = pattern.template();
    let action = if template.starts_with('/') || template == "*" {
        let method = request.method().as_str();
        let mut action = String::with_capacity(method.len() + 1 + template.len());
        action.push_str(method);
        action.push(' ');
        action.push_str(template);
        action
    } else {
        template.to_string()
    };
    let record = AuditRecord {
        time: AuditRecord::timestamp(config.clock.now_micros()),
        request_id: request_id.to_str().unwrap_or_default().to_string(),
        actor: None,
        actor_kind: None,
        session: None,
        action,
        resource: redacted(path, request.uri().query(), &config.allowed_query),
        subject: route
            .subject_param
            .as_deref()
            .and_then(|name| pattern.params(path).find(|(n, _)| *n == name))
            .map(|(_, value)| value.into_owned()),
        status: 0,
        refused_by: None,
        source_ip: config
            .proxies
            .client_of(request.headers(), request.extensions())
            .map(|ip| ip.to_string()),
        user_agent: request
            .headers()
            .get(USER_AGENT)
            .map(|v| shorten(&String::from_utf8_lossy(v.as_bytes()), 256)),
        latency_us: 0,
    };
    Started {
        record,
        began: Instant::now(),
        request_id,
    }
}

/// The fields the answer tells: status, who (the principal an inner auth layer copied to the
/// response), which policy refused, how long it took.
fn finish<B>(record: &mut AuditRecord, began: Instant, response: &Response<B>) {
    record.status = response.status().as_u16();
    record.latency_us = elapsed(began);
    if let Some(principal) = response.extensions().get::<Principal>() {
        record.actor = Some(String::from(&*principal.id));
        record.actor_kind = Some(
            match principal.kind {
                PrincipalKind::User => "user",
                PrincipalKind::Service => "service",
                _ => "anonymous",
            }
            .to_string(),
        );
        record.session = principal.session_id.as_deref().map(str::to_string);
    }
    record.refused_by = response
        .extensions()
        .get::<Rejection>()
        .map(|r| r.error.to_string());
}

/// The path and its query, every value redacted but the allowed ones: a query string can hold
/// PHI (a name, a date of birth) and the record must hold the minimum necessary.
fn redacted(path: &str, query: Option<&str>, allowed: &[String]) -> String {
    let Some(query) = query.filter(|q| !q.is_empty()) else {
        return path.to_string();
    };
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, value)) if allowed.iter().any(|a| a == name) => format!("{name}={value}"),
            Some((name, _)) => format!("{name}=REDACTED"),
            // A bare item (`?Ada+Lovelace`) is a value, not a name: nothing of it is kept.
            None => "REDACTED".to_string(),
        })
        .collect();
    format!("{path}?{}", pairs.join("&"))
}

/// At most `max` bytes, cut at a character boundary.
fn shorten(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
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
