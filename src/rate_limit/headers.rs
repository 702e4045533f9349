//! The rate-limit header fields: GitHub's `X-RateLimit-*` always, the IETF draft's when asked.

use bytes::Bytes;
use http::HeaderMap;
use http::header::{HeaderName, HeaderValue, RETRY_AFTER};

use super::quota::Quota;
use super::store::Decision;
use crate::clock::ceil_secs;
use crate::header_value::{decimal, recent_decimal};

static LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
static REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
static USED: HeaderName = HeaderName::from_static("x-ratelimit-used");
static RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");
static POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
static RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// A policy's name written as a structured-field string, with what it cannot hold left out.
pub(crate) fn sf_string(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 2);
    out.push('"');
    for c in name.chars().filter(|c| (' '..='~').contains(c)) {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// `RateLimit-Policy: "free";q=100;w=60`.
pub(crate) fn policy_value(name: &str, quota: &Quota) -> HeaderValue {
    let value = format!(
        "{};q={};w={}",
        sf_string(name),
        quota.count(),
        ceil_secs(quota.period_micros())
    );
    HeaderValue::try_from(value).unwrap_or_else(|_| HeaderValue::from_static("\"default\""))
}

/// A quota's header values, built once with its limit.
#[derive(Debug, Clone)]
pub(crate) struct LimitFields {
    /// The quota's name, for a `RateLimit-Policy` of another quota (a caller's override).
    name: Box<str>,
    /// The quota these values are for.
    quota: Quota,
    /// The name as a structured-field string (`"free"`), as the IETF fields write it.
    quoted: Box<str>,
    policy: HeaderValue,
    /// `X-RateLimit-Limit`.
    capacity: HeaderValue,
}

impl LimitFields {
    pub(crate) fn new(name: &str, quota: &Quota) -> Self {
        Self {
            name: name.into(),
            quota: *quota,
            quoted: sf_string(name).into(),
            policy: policy_value(name, quota),
            capacity: HeaderValue::from(quota.capacity()),
        }
    }
}

/// How many fields [`write`] adds to an answer it lets through: `X-RateLimit-Limit`,
/// `-Remaining`, `-Used`, `-Reset`, and with the IETF fields `RateLimit-Policy` and `RateLimit`
/// (`Retry-After` goes on refusals only).
pub(crate) const ANSWER_FIELDS: usize = 6;

/// Writes the fields for a decision; `ietf` adds `RateLimit-Policy` and `RateLimit`.
pub(crate) fn write(headers: &mut HeaderMap, decision: &Decision, limit: &LimitFields, ietf: bool) {
    // Grow the map once, not once per field as it fills.
    headers.reserve(4 + usize::from(decision.retry_after_us.is_some()) + 2 * usize::from(ietf));
    let same_quota = decision.quota == limit.quota;
    headers.insert(
        LIMIT.clone(),
        if same_quota {
            limit.capacity.clone()
        } else {
            decimal(decision.limit())
        },
    );
    headers.insert(REMAINING.clone(), decimal(decision.remaining));
    headers.insert(USED.clone(), decimal(decision.used()));
    // The same for every answer until the window moves on.
    headers.insert(
        RESET.clone(),
        recent_decimal(ceil_secs(decision.now_us + decision.reset_after_us)),
    );
    if let Some(retry) = decision.retry_after_us {
        headers.insert(RETRY_AFTER, decimal(ceil_secs(retry).max(1)));
    }
    if ietf {
        let policy = if same_quota {
            limit.policy.clone()
        } else {
            policy_value(&limit.name, &decision.quota)
        };
        headers.insert(POLICY.clone(), policy);
        let (mut remaining, mut reset) = (itoa::Buffer::new(), itoa::Buffer::new());
        let (remaining, reset) = (
            remaining.format(decision.remaining).as_bytes(),
            reset.format(ceil_secs(decision.reset_after_us)).as_bytes(),
        );
        // Made at its exact size, the value takes its buffer without another allocation.
        let mut current =
            Vec::with_capacity(limit.quoted.len() + 6 + remaining.len() + reset.len());
        current.extend_from_slice(limit.quoted.as_bytes());
        current.extend_from_slice(b";r=");
        current.extend_from_slice(remaining);
        current.extend_from_slice(b";t=");
        current.extend_from_slice(reset);
        if let Ok(value) = HeaderValue::from_maybe_shared(Bytes::from(current)) {
            headers.insert(RATELIMIT.clone(), value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_escaped_as_structured_strings() {
        assert_eq!(sf_string("free"), "\"free\"");
        assert_eq!(sf_string("a\"b\\c\u{7}é"), "\"a\\\"b\\\\c\"");
        assert_eq!(
            policy_value("default", &Quota::per_minute(100)),
            "\"default\";q=100;w=60"
        );
    }
}
