//! A resource's validators on the wire: read from a handler's answer, written onto the
//! layer's, and viewed for evaluation.

use http::header::{ETAG, HeaderValue, LAST_MODIFIED};
use http::{HeaderMap, Response};

use super::etag::EntityTag;
use super::precondition::Validators;
use super::store::StoredValidators;
use crate::body::PolicyBody;

/// The response with only the validators its handler states: its ETag and Last-Modified.
pub(super) fn stated<B>(response: Response<B>) -> (Response<PolicyBody<B>>, StoredValidators) {
    let headers = response.headers();
    let validators = StoredValidators {
        etag: headers
            .get(ETAG)
            .and_then(|value| EntityTag::parse(value.as_bytes()).ok()),
        last_modified: last_modified(headers),
    };
    (response.map(PolicyBody::inner), validators)
}

pub(super) fn last_modified(headers: &HeaderMap) -> Option<std::time::SystemTime> {
    headers
        .get(LAST_MODIFIED)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok())
}

pub(super) fn view(validators: &StoredValidators) -> Validators<'_> {
    Validators {
        etag: validators.etag.as_ref(),
        last_modified: validators.last_modified,
    }
}

/// How many fields a read's answer gets at most: `ETag`, `Last-Modified` and the resource's
/// `Cache-Control`.
pub(crate) const ANSWER_FIELDS: usize = 3;

pub(super) fn write_validators(headers: &mut HeaderMap, validators: &StoredValidators) {
    if let Some(tag) = &validators.etag {
        headers.insert(ETAG, tag.to_header_value());
    }
    if let Some(modified) = validators.last_modified
        && let Ok(value) = HeaderValue::from_str(&httpdate::fmt_http_date(modified))
    {
        headers.insert(LAST_MODIFIED, value);
    }
}
