//! `PUT`, `PATCH`, `DELETE` and `POST` on a resource: the preconditions decided under its
//! write lock before the handler runs.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body::Body;
use tower_service::Service;

use super::lock_guard::LockGuard;
use super::plan::Plan;
use super::policy::{Config, Current, Resource};
use super::precondition::{Evaluation, Preconditions, evaluate};
use super::rejections::{busy, precondition_failed, precondition_required, unavailable};
use super::store::{Locked, StoredValidators, Update, ValidatorStore};
use super::validators::{stated, view};
use crate::body::PolicyBody;
use crate::buffer::BoxError;
use crate::kit::store_failed;
use crate::owner::OwnerToken;
use crate::rejection::{Rejection, RejectionContext};

/// `PUT`, `PATCH`, `DELETE` and `POST` on a resource: under its write lock, the preconditions
/// decided against its current validators before the handler runs, and the validators the
/// answer names kept for the next request.
pub(super) async fn update<St, S, ReqBody, ResBody>(
    store: St,
    config: Arc<Config>,
    plan: Plan,
    mut inner: S,
    request: Request<ReqBody>,
) -> Result<Response<PolicyBody<ResBody>>, S::Error>
where
    St: ValidatorStore,
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Body<Data = Bytes> + Unpin,
    ResBody::Error: Into<BoxError>,
{
    let Some(target) = plan.target else {
        return inner.call(request).await.map(|r| r.map(PolicyBody::inner));
    };
    let resource = target.resource;
    let refuse = |rejection: Rejection, request: &Request<ReqBody>| {
        Ok(config
            .renderer
            .respond(rejection, &RejectionContext::of(request)))
    };
    let owner = OwnerToken::new();
    // Armed before the lock is asked for: a request dropped while asking (or a reply lost to a
    // timeout) still releases a lock it may have been given. Releasing one it never got is a
    // no-op: the owner does not match.
    let mut lock = LockGuard {
        store: store.clone(),
        resource: resource.path.clone(),
        owner: Some(owner.clone()),
        ttl: config.validator_ttl,
    };
    let deadline = tokio::time::Instant::now() + config.lock_wait;
    let mut pause = Duration::from_millis(2);
    let mut judged_while_busy = false;
    let known = loop {
        match store.lock(&resource.path, &owner, config.lease).await {
            Ok(Locked::Held { current }) => break current,
            Ok(Locked::Busy { current, .. }) => {
                // A precondition that the validators of now already fail fails for a request
                // ordered before the update under way (or, when a lookup sees that update's
                // change, after it): either way it need not wait. Judged once, as a lookup may
                // cost a query; one that passes waits, and is judged again under the lock.
                if !judged_while_busy {
                    judged_while_busy = true;
                    if let Ok(current) = current_validators(&config, &resource, current).await
                        && judge(request.method(), &plan.preconditions, current.as_ref())
                            == Evaluation::PreconditionFailed
                    {
                        lock.disarm();
                        crate::metrics::decision!("conditional", "precondition_failed");
                        return refuse(precondition_failed(&named(current)), &request);
                    }
                }
                let now = tokio::time::Instant::now();
                if now >= deadline {
                    lock.disarm();
                    return refuse(busy(), &request);
                }
                store
                    .until_unlocked(&resource.path, pause.min(deadline - now))
                    .await;
                pause = (pause * 2).min(Duration::from_millis(100));
            }
            Err(error) => {
                let closed = crate::FailurePolicy::Closed;
                store_failed("conditional", store.backend_name(), &error, closed, None);
                lock.unlock(Update::Keep).await;
                return refuse(unavailable(), &request);
            }
        }
    };
    let current = match current_validators(&config, &resource, known).await {
        Ok(current) => current,
        Err(error) => {
            tracing::error!(layer = "conditional", %error,
                "the validator lookup failed; answering 503");
            lock.unlock(Update::Keep).await;
            return refuse(unavailable(), &request);
        }
    };
    // `If-Unmodified-Since` guards nothing on a resource without a modification date (RFC 9110
    // ignores it there), so alone it does not satisfy a required precondition.
    let dated = matches!(&current, Some(Current::Exists(v)) if v.last_modified.is_some());
    if target.require_preconditions
        && plan.preconditions.if_match.is_none()
        && plan.preconditions.if_none_match.is_none()
        && !dated
        && matches!(
            *request.method(),
            Method::PUT | Method::PATCH | Method::DELETE
        )
        && !matches!(current, Some(Current::Missing))
    {
        lock.unlock(Update::Keep).await;
        return refuse(precondition_required(), &request);
    }
    match judge(request.method(), &plan.preconditions, current.as_ref()) {
        Evaluation::Proceed => crate::metrics::decision!("conditional", "proceed"),
        _ => {
            crate::metrics::decision!("conditional", "precondition_failed");
            // What was learned stays: nothing changed.
            lock.unlock(Update::Keep).await;
            return refuse(precondition_failed(&named(current)), &request);
        }
    }
    let method = request.method().clone();
    let response = match inner.call(request).await {
        Ok(response) => response,
        Err(error) => {
            lock.unlock(Update::Forget).await;
            return Err(error);
        }
    };
    if !response.status().is_success() {
        lock.unlock(Update::Keep).await;
        return Ok(response.map(PolicyBody::inner));
    }
    if method == Method::DELETE {
        lock.unlock(Update::Forget).await;
        return Ok(response.map(PolicyBody::inner));
    }
    // Only validators the handler states: a digest of an update's answer (an empty 204, a
    // constant `{"ok":true}`) need not be the new representation's (RFC 9110 section 9.3.4).
    let (response, validators) = stated(response);
    let update = if validators.etag.is_some() || validators.last_modified.is_some() {
        Update::Set(validators)
    } else {
        Update::Forget
    };
    lock.unlock(update).await;
    Ok(response)
}

/// The resource's validators for an update: the lookup's answer when there is one, else what
/// the store knows (`None`: not known, judged as a representation whose tags nobody knows; see
/// the module docs).
async fn current_validators(
    config: &Config,
    resource: &Resource,
    known: Option<StoredValidators>,
) -> Result<Option<Current>, crate::error::StoreError> {
    match &config.lookup {
        Some(lookup) => lookup(resource.clone()).await.map(Some),
        None => Ok(known.map(Current::Exists)),
    }
}

/// An update's preconditions judged against its resource. Missing, or not known: either way no
/// tag can match, so `If-Match` fails safe (412) and `If-None-Match: *` lets the handler create;
/// a `DELETE` or `PATCH` of what is known to be missing is the handler's 404, whatever its
/// preconditions.
fn judge(method: &Method, preconditions: &Preconditions, current: Option<&Current>) -> Evaluation {
    let validators = match current {
        Some(Current::Exists(v)) => Some(view(v)),
        _ => None,
    };
    let unconditional = (matches!(current, Some(Current::Missing))
        && matches!(*method, Method::DELETE | Method::PATCH))
    .then_some(StatusCode::NOT_FOUND);
    evaluate(method, preconditions, validators, unconditional)
}

/// The validators a 412 names: the current ones, or none.
fn named(current: Option<Current>) -> StoredValidators {
    match current {
        Some(Current::Exists(v)) => v,
        _ => StoredValidators::default(),
    }
}
