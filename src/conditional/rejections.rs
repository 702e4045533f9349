//! The layer's refusals: a failed or missing precondition, a busy resource, a store that
//! cannot decide.

use http::StatusCode;
use http::header::{HeaderValue, RETRY_AFTER};

use super::store::StoredValidators;
use super::validators::write_validators;
use crate::rejection::Rejection;

pub(super) fn precondition_failed(current: &StoredValidators) -> Rejection {
    let mut rejection = Rejection::new(
        StatusCode::PRECONDITION_FAILED,
        "precondition_failed",
        "The resource changed since you read it, does not exist, or its current ETag is not known here: read it again (GET) and retry with its ETag.",
    );
    write_validators(&mut rejection.headers, current);
    rejection
}

pub(super) fn precondition_required() -> Rejection {
    crate::metrics::decision!("conditional", "precondition_required");
    Rejection::new(
        StatusCode::PRECONDITION_REQUIRED,
        "precondition_required",
        "This resource is updated only conditionally: send If-Match with the ETag you last read (or If-Unmodified-Since).",
    )
}

pub(super) fn busy() -> Rejection {
    Rejection::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "resource_busy",
        "Another update of this resource is under way; retry shortly.",
    )
    .with_header(RETRY_AFTER, HeaderValue::from_static("1"))
}

pub(super) fn unavailable() -> Rejection {
    Rejection::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "conditional_unavailable",
        "Conditional updates cannot be decided safely right now; retry shortly.",
    )
    .with_header(RETRY_AFTER, HeaderValue::from_static("1"))
}
