//! RFC 9110 section 13.2.2, "Evaluation": which answer a request's preconditions call for, as
//! one pure function of the method, the preconditions, the current representation's validators
//! and the answer the request would get without them.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::header::{IF_MATCH, IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_UNMODIFIED_SINCE};
use http::{HeaderMap, Method, StatusCode};

use super::etag::{EntityTag, EtagError, TagList};

/// The preconditions of a request.
///
/// Malformed `If-Match` / `If-None-Match` lists are an error (the layer answers 400
/// `precondition_malformed`: guessing what a lost-update guard meant is worse than refusing it).
/// Dates that are not a valid HTTP-date, or that appear on more than one line, are ignored, as
/// RFC 9110 sections 13.1.3 and 13.1.4 require.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Preconditions {
    /// `If-Match`.
    pub if_match: Option<TagList>,
    /// `If-None-Match`.
    pub if_none_match: Option<TagList>,
    /// `If-Modified-Since`, when valid.
    pub if_modified_since: Option<SystemTime>,
    /// `If-Unmodified-Since`, when valid.
    pub if_unmodified_since: Option<SystemTime>,
}

impl Preconditions {
    /// Reads the four headers.
    ///
    /// # Errors
    /// [`EtagError`] for a malformed `If-Match` or `If-None-Match`.
    pub fn from_headers(headers: &HeaderMap) -> Result<Self, EtagError> {
        Ok(Self {
            if_match: TagList::from_headers(headers.get_all(IF_MATCH))?,
            if_none_match: TagList::from_headers(headers.get_all(IF_NONE_MATCH))?,
            if_modified_since: date(headers, &IF_MODIFIED_SINCE),
            if_unmodified_since: date(headers, &IF_UNMODIFIED_SINCE),
        })
    }

    /// Whether the request carries none (valid ones, for dates).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }

    /// Whether the request guards an update against lost updates: `If-Match` or a valid
    /// `If-Unmodified-Since` (what "require preconditions" asks for).
    #[must_use]
    pub fn guards_update(&self) -> bool {
        self.if_match.is_some() || self.if_unmodified_since.is_some()
    }
}

fn date(headers: &HeaderMap, name: &http::HeaderName) -> Option<SystemTime> {
    let mut values = headers.get_all(name).iter();
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    httpdate::parse_http_date(value.to_str().ok()?).ok()
}

/// The current representation's validators.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Validators<'a> {
    /// Its entity tag, when it has one.
    pub etag: Option<&'a EntityTag>,
    /// Its modification time, when it has one.
    pub last_modified: Option<SystemTime>,
}

/// What the preconditions call for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Evaluation {
    /// Handle the request as if it had no preconditions.
    Proceed,
    /// 304 Not Modified (GET and HEAD only).
    NotModified,
    /// 412 Precondition Failed.
    PreconditionFailed,
}

/// Evaluates `preconditions` in RFC 9110's order.
///
/// - `current`: the selected representation's validators, `None` when there is none (the target
///   does not exist).
/// - `unconditional`: the status the request would get without preconditions, when known. The
///   preconditions are ignored unless it is 2xx or 412 (a `DELETE` of a missing resource is 404
///   whatever its `If-Match`), and for `CONNECT`, `OPTIONS` and `TRACE`.
///
/// The order: `If-Match` (else `If-Unmodified-Since`) false is 412; then `If-None-Match` true
/// (a match) is 304 for GET/HEAD and 412 otherwise; then, for GET/HEAD without `If-None-Match`,
/// `If-Modified-Since` false is 304. Dates compare in whole seconds, and are ignored when the
/// representation has no modification time.
///
/// ```
/// use api_policy::conditional::{evaluate, EntityTag, Evaluation, Preconditions, TagList, Validators};
/// use http::Method;
///
/// let current = EntityTag::strong("v2")?;
/// let stale = Preconditions { if_match: Some(TagList::Tags(vec![EntityTag::strong("v1")?])), ..Default::default() };
/// let validators = Validators { etag: Some(&current), last_modified: None };
/// assert_eq!(evaluate(&Method::PUT, &stale, Some(validators), None), Evaluation::PreconditionFailed);
/// # Ok::<(), api_policy::conditional::EtagError>(())
/// ```
#[must_use]
pub fn evaluate(
    method: &Method,
    preconditions: &Preconditions,
    current: Option<Validators<'_>>,
    unconditional: Option<StatusCode>,
) -> Evaluation {
    if matches!(*method, Method::CONNECT | Method::OPTIONS | Method::TRACE)
        || unconditional.is_some_and(|s| !s.is_success() && s != StatusCode::PRECONDITION_FAILED)
    {
        return Evaluation::Proceed;
    }
    let etag = current.and_then(|c| c.etag);
    let exists = current.is_some();
    let last_modified = current.and_then(|c| c.last_modified).map(whole_seconds);
    let safe = matches!(*method, Method::GET | Method::HEAD);

    // Step 1, else step 2.
    match &preconditions.if_match {
        Some(list) => {
            if !list.matches_strong(exists, etag) {
                return Evaluation::PreconditionFailed;
            }
        }
        None => {
            if let (Some(since), Some(modified)) =
                (preconditions.if_unmodified_since, last_modified)
                && modified > whole_seconds(since)
            {
                return Evaluation::PreconditionFailed;
            }
        }
    }
    // Step 3, else step 4.
    match &preconditions.if_none_match {
        Some(list) => {
            if list.matches_weak(exists, etag) {
                return if safe {
                    Evaluation::NotModified
                } else {
                    Evaluation::PreconditionFailed
                };
            }
        }
        None => {
            if safe
                && let (Some(since), Some(modified)) =
                    (preconditions.if_modified_since, last_modified)
                && modified <= whole_seconds(since)
            {
                return Evaluation::NotModified;
            }
        }
    }
    Evaluation::Proceed
}

/// HTTP dates have a resolution of one second.
fn whole_seconds(t: SystemTime) -> SystemTime {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    UNIX_EPOCH + Duration::from_secs(secs)
}
