//! The once-per-key engine: running a keyed request once, the record's life from lock to
//! replay, on an [`IdempotencyStore`]. A shared piece: the idempotency layer runs requests by
//! their `Idempotency-Key`, the webhook layer deliveries by their event id.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, RETRY_AFTER};
use http::{Request, Response, StatusCode};
use http_body::Body;
use tower_service::Service;

use crate::body::PolicyBody;
use crate::buffer::{BoxError, Collected, collect};
use crate::idempotency::fingerprint::Fingerprint;
use crate::idempotency::record::{Outcome, StoredResponse};
use crate::idempotency::store::{Begin, IdempotencyStore, RecordKey, Terms};
use crate::kit::store_failed;
use crate::owner::OwnerToken;
use crate::rejection::{Rejection, RejectionContext, RequestShadow, SharedRenderer};

/// The header every replayed response carries.
pub const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// What the handler sees of the key, as a request extension: the key and which attempt this is.
///
/// An `attempt` above 1 means earlier attempts with this key started and did not finish (the
/// client went away mid-handler, the process crashed, or a 5xx was released for retry): a
/// multi-step handler should look for the work they left (its recovery points) before redoing it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct IdempotencyKey {
    /// The key as the client sent it (unquoted), or a webhook's event id.
    pub key: Arc<str>,
    /// 1 for the first attempt.
    pub attempt: u32,
}

/// Put in a response's extensions by a handler that changed nothing (its input failed
/// validation, say): the response is sent but not kept, and a retry with the same key runs anew,
/// as Stripe does for requests that fail before they execute.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NotExecuted;

/// Which responses become the key's final answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Keep {
    /// Every response (errors too, as Stripe and the IETF draft replay them), except 5xx when
    /// `release_on_5xx` is set.
    Answers { release_on_5xx: bool },
    /// Only 2xx: a webhook sender retries anything else, and the retry must run the handler.
    Successes,
}

/// How keyed requests run, for one layer.
pub(crate) struct Settings {
    pub(crate) terms: Terms,
    pub(crate) max_response_bytes: usize,
    pub(crate) keep: Keep,
    /// Wait mode: how long a duplicate waits for the first attempt to finish, polling the store.
    pub(crate) wait: Option<Duration>,
    pub(crate) renderer: SharedRenderer,
    pub(crate) layer: &'static str,
    pub(crate) store_failures: AtomicU64,
}

/// The first and last pause between polls of an in-flight record in wait mode.
const POLL_FIRST: Duration = Duration::from_millis(5);
const POLL_MAX: Duration = Duration::from_millis(200);

/// A keyed request on its way through [`run`].
pub(crate) struct Keyed {
    pub(crate) scope: String,
    pub(crate) key: String,
    pub(crate) fingerprint: Fingerprint,
}

/// Runs `request` through the ready `inner` at most once per record, replaying the outcome to
/// every later request with the same key and fingerprint.
pub(crate) async fn run<St, S, ReqBody, B>(
    store: St,
    settings: Arc<Settings>,
    keyed: Keyed,
    mut inner: S,
    mut request: Request<ReqBody>,
) -> Result<Response<PolicyBody<B>>, S::Error>
where
    St: IdempotencyStore,
    S: Service<Request<ReqBody>, Response = Response<B>>,
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    let record = RecordKey {
        scope: &keyed.scope,
        key: &keyed.key,
    };
    let refuse = |rejection: Rejection, request: &Request<ReqBody>| {
        settings
            .renderer
            .respond(rejection, &RejectionContext::of(request))
    };
    let deadline = settings.wait.map(|w| {
        let now = tokio::time::Instant::now();
        // A wait too long to add is as good as a year.
        now.checked_add(w)
            .unwrap_or_else(|| now + Duration::from_secs(365 * 24 * 3600))
    });
    let mut pause = POLL_FIRST;
    let (owner, attempt) = loop {
        let asked = std::time::Instant::now();
        let begun = store
            .begin(record, &keyed.fingerprint, &settings.terms)
            .await;
        crate::metrics::store_latency(
            settings.layer,
            store.backend_name(),
            asked.elapsed().as_secs_f64(),
        );
        match begun {
            Ok(Begin::Started { owner, attempt }) => {
                crate::metrics::decision_of(settings.layer, "started");
                break (owner, attempt);
            }
            Ok(Begin::Finished(outcome)) => {
                crate::metrics::decision_of(settings.layer, "replayed");
                crate::metrics::idempotency_replay();
                return Ok(replay(outcome, &settings, &request));
            }
            Ok(Begin::Mismatch) => {
                crate::metrics::decision_of(settings.layer, "reused");
                return Ok(refuse(mismatch(), &request));
            }
            Ok(Begin::InFlight { lease_left }) => {
                let now = tokio::time::Instant::now();
                match deadline {
                    Some(deadline) if now < deadline => {
                        store
                            .until_unlocked(record, pause.min(deadline - now))
                            .await;
                        pause = (pause * 2).min(POLL_MAX);
                    }
                    _ => {
                        crate::metrics::decision_of(settings.layer, "in_use");
                        return Ok(refuse(in_use(lease_left), &request));
                    }
                }
            }
            Err(error) => {
                crate::metrics::decision_of(settings.layer, "unavailable");
                store_failed(
                    settings.layer,
                    store.backend_name(),
                    &error,
                    crate::FailurePolicy::Closed,
                    Some(&settings.store_failures),
                );
                return Ok(refuse(unavailable(), &request));
            }
        }
    };

    let mut lock = Lock {
        store: store.clone(),
        scope: keyed.scope.clone(),
        key: keyed.key.clone(),
        owner: Some(owner),
        terms: settings.terms,
        answered: None,
    };
    request.extensions_mut().insert(IdempotencyKey {
        key: keyed.key.as_str().into(),
        attempt,
    });
    let context = RequestShadow::of(&request);
    let response = match inner.call(request).await {
        Ok(response) => response,
        Err(error) => {
            lock.release().await;
            return Err(error);
        }
    };

    let status = response.status();
    let unexecuted = response.extensions().get::<Rejection>().is_some()
        || response.extensions().get::<NotExecuted>().is_some();
    let release = unexecuted
        || match settings.keep {
            Keep::Answers { release_on_5xx } => release_on_5xx && status.is_server_error(),
            Keep::Successes => !status.is_success(),
        };
    if release {
        lock.release().await;
        return Ok(response.map(PolicyBody::inner));
    }

    lock.answered = Some(status);
    let (parts, body) = response.into_parts();
    let (outcome, response) = match collect(body, settings.max_response_bytes).await {
        Collected::Whole(bytes) => {
            let stored = StoredResponse::new(status, &parts.headers, bytes.clone());
            (
                Outcome::Response(stored),
                Response::from_parts(parts, PolicyBody::full(bytes)),
            )
        }
        Collected::Partial {
            head,
            trailers,
            rest,
        } => {
            tracing::warn!(layer = settings.layer, key = %keyed.key, status = status.as_u16(),
                limit = settings.max_response_bytes,
                "response too large (or with trailers) to keep; retries will be told it ran, not replayed");
            (
                Outcome::NotKept { status },
                Response::from_parts(parts, PolicyBody::resumed(head, trailers, rest)),
            )
        }
        Collected::Failed(error) => {
            tracing::error!(layer = settings.layer, key = %keyed.key, status = status.as_u16(),
                %error, "the handler's response body failed; answering 500");
            let rejection = Rejection::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "response_body_failed",
                "The request ran, but its response could not be read to the end.",
            );
            (
                Outcome::NotKept { status },
                settings.renderer.respond(rejection, &context.context()),
            )
        }
    };
    lock.complete(outcome, &settings).await;
    Ok(response)
}

/// The in-flight lock, released when the request is dropped before the handler answered (the
/// client went away), and completed as "ran, not kept" when dropped after: the handler must
/// never run twice because a client hung up while its body was read.
struct Lock<St: IdempotencyStore> {
    store: St,
    scope: String,
    key: String,
    owner: Option<OwnerToken>,
    terms: Terms,
    answered: Option<StatusCode>,
}

impl<St: IdempotencyStore> Lock<St> {
    async fn release(&mut self) {
        // The owner stays armed until the release is done: a client hanging up meanwhile still
        // gets its lock released, by the destructor.
        let Some(owner) = self.owner.clone() else {
            return;
        };
        let record = RecordKey {
            scope: &self.scope,
            key: &self.key,
        };
        if let Err(error) = self.store.release(record, &owner, &self.terms).await {
            tracing::warn!(layer = "idempotency", backend = self.store.backend_name(), %error,
                "could not release a lock; its lease will end it");
        }
        self.owner = None;
    }

    /// Stores the outcome in a task of its own, so a client hanging up now cannot cancel it.
    async fn complete(&mut self, outcome: Outcome, settings: &Settings) {
        let Some(owner) = self.owner.take() else {
            return;
        };
        let task = finish(Completion {
            store: self.store.clone(),
            scope: std::mem::take(&mut self.scope),
            key: std::mem::take(&mut self.key),
            owner,
            outcome,
            terms: self.terms,
        });
        let completed = match tokio::runtime::Handle::try_current() {
            Ok(runtime) => runtime.spawn(task).await.unwrap_or(false),
            Err(_) => task.await,
        };
        if !completed {
            settings.store_failures.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// An outcome on its way to the store, for the lock `owner` holds.
struct Completion<St> {
    store: St,
    scope: String,
    key: String,
    owner: OwnerToken,
    outcome: Outcome,
    terms: Terms,
}

impl<St: IdempotencyStore> Completion<St> {
    async fn attempt(&self) -> Result<bool, crate::error::StoreError> {
        let record = RecordKey {
            scope: &self.scope,
            key: &self.key,
        };
        let stored = self
            .store
            .complete(record, &self.owner, &self.outcome, &self.terms)
            .await;
        if matches!(stored, Ok(false)) {
            tracing::warn!(layer = "idempotency", backend = self.store.backend_name(), key = %self.key,
                "the lock was gone when the request finished (its lease ended and another attempt may have taken it over, or the store lost it); raise the lease above the handler's running time");
        }
        stored
    }
}

/// One attempt to store the outcome; whether it is stored. A store that failed gets it later,
/// in the background ([`keep_completing`]): the answer goes out now.
async fn finish<St: IdempotencyStore>(completion: Completion<St>) -> bool {
    match completion.attempt().await {
        Ok(stored) => stored,
        Err(error) => {
            tracing::warn!(layer = "idempotency", backend = completion.store.backend_name(),
                key = %completion.key, %error,
                "could not store the outcome; trying again until the lock's lease ends");
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(keep_completing(completion));
            }
            false
        }
    }
}

/// Stores an outcome the store refused, until it takes it or the lock's lease ends. The lock
/// stays ours until then (the store checks the owner), so a store that blinks does not lose
/// the outcome, and a retry finds a replay instead of running the handler a second time.
async fn keep_completing<St: IdempotencyStore>(completion: Completion<St>) {
    let deadline = tokio::time::Instant::now() + completion.terms.lease;
    let mut pause = Duration::from_millis(50);
    loop {
        tokio::time::sleep(
            pause.min(deadline.saturating_duration_since(tokio::time::Instant::now())),
        )
        .await;
        match completion.attempt().await {
            Ok(true) => {
                tracing::info!(layer = "idempotency", backend = completion.store.backend_name(),
                    key = %completion.key, "stored the outcome once the store answered again");
                return;
            }
            Ok(false) => return,
            Err(error) if tokio::time::Instant::now() >= deadline => {
                tracing::error!(layer = "idempotency", backend = completion.store.backend_name(),
                    key = %completion.key, %error,
                    "could not store the outcome before the lease ended; a retry will run the handler again");
                return;
            }
            Err(_) => pause = (pause * 2).min(Duration::from_secs(1)),
        }
    }
}

impl<St: IdempotencyStore> Drop for Lock<St> {
    fn drop(&mut self) {
        let Some(owner) = self.owner.take() else {
            return;
        };
        let (scope, key) = (
            std::mem::take(&mut self.scope),
            std::mem::take(&mut self.key),
        );
        match self.answered {
            None => self.store.release_detached(scope, key, owner, self.terms),
            Some(status) => {
                if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                    runtime.spawn(finish(Completion {
                        store: self.store.clone(),
                        scope,
                        key,
                        owner,
                        outcome: Outcome::NotKept { status },
                        terms: self.terms,
                    }));
                }
            }
        }
    }
}

fn replay<B, ReqBody>(
    outcome: Outcome,
    settings: &Settings,
    request: &Request<ReqBody>,
) -> Response<PolicyBody<B>> {
    match outcome {
        Outcome::Response(stored) => {
            let mut response = Response::new(PolicyBody::full(stored.body));
            *response.status_mut() = stored.status;
            *response.headers_mut() = stored.headers;
            response
                .headers_mut()
                .insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
            response
        }
        // A webhook sender only needs to hear the delivery was handled, or it retries for days.
        Outcome::NotKept { status } if settings.keep == Keep::Successes => {
            let mut response = Response::new(PolicyBody::empty());
            *response.status_mut() = status;
            response
                .headers_mut()
                .insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
            response
        }
        Outcome::NotKept { status } => {
            let rejection = Rejection::new(
                StatusCode::CONFLICT,
                "idempotency_response_not_kept",
                format!(
                    "A request with this key already ran and answered {}; its response was too large to keep, so it cannot be replayed, and the request will not run again.",
                    status.as_u16()
                ),
            );
            settings
                .renderer
                .respond(rejection, &RejectionContext::of(request))
        }
    }
}

fn mismatch() -> Rejection {
    Rejection::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "idempotency_key_reused",
        "This Idempotency-Key was already used for a different request (method, path, query or body); use a new key for a new request.",
    )
}

/// `Retry-After: 1`: the first attempt usually ends well within a second; its lease is only the
/// worst case (a crashed attempt), which the detail states.
fn in_use(lease_left: Duration) -> Rejection {
    Rejection::new(
        StatusCode::CONFLICT,
        "idempotency_key_in_use",
        format!(
            "A request with this Idempotency-Key is still being processed; retry shortly to receive its result (if it was lost, the key frees within {} s).",
            crate::clock::ceil_secs(u64::try_from(lease_left.as_micros()).unwrap_or(u64::MAX))
        ),
    )
    .with_header(RETRY_AFTER, HeaderValue::from_static("1"))
}

pub(crate) fn unavailable() -> Rejection {
    Rejection::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "idempotency_unavailable",
        "Requests with an Idempotency-Key cannot be processed safely right now; retry shortly with the same key.",
    )
    .with_header(RETRY_AFTER, HeaderValue::from_static("1"))
}
