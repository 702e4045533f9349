//! The rate-limit header fields: GitHub's `X-RateLimit-*` always, the IETF draft's when asked.

use bytes::Bytes;
use http::HeaderMap;
use http::header::{HeaderName, HeaderValue, RETRY_AFTER};

use super::layer::Limit;
use super::quota::Quota;
use super::store::Decision;
use crate::clock::ceil_secs;

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

/// Writes the fields for a decision; `ietf` adds `RateLimit-Policy` and `RateLimit`.
///
/// The changing values are written into one buffer and each field is a slice of it, so a
/// decision costs one allocation for all its numbers instead of one per field.
pub(crate) fn write(headers: &mut HeaderMap, decision: &Decision, limit: &Limit, ietf: bool) {
    // Grow the map once, not once per field as it fills.
    headers.reserve(4 + usize::from(decision.retry_after_us.is_some()) + 2 * usize::from(ietf));
    let same_quota = decision.quota == limit.quota;
    let mut text = Fields::with_capacity(64 + if ietf { limit.quoted.len() + 32 } else { 0 });
    let capacity = (!same_quota).then(|| text.number(decision.limit()));
    let remaining = text.number(decision.remaining);
    let used = text.number(decision.used());
    let reset = text.number(ceil_secs(decision.now_us + decision.reset_after_us));
    let retry = decision
        .retry_after_us
        .map(|retry| text.number(ceil_secs(retry).max(1)));
    let current = ietf.then(|| {
        let begin = text.0.len();
        text.0.extend_from_slice(limit.quoted.as_bytes());
        text.0.extend_from_slice(b";r=");
        text.push_number(decision.remaining);
        text.0.extend_from_slice(b";t=");
        text.push_number(ceil_secs(decision.reset_after_us));
        begin..text.0.len()
    });
    let text = Bytes::from(text.0);
    let field = |range: std::ops::Range<usize>| HeaderValue::from_maybe_shared(text.slice(range));
    headers.insert(
        LIMIT.clone(),
        match capacity.map(field) {
            Some(Ok(value)) => value,
            _ => limit.capacity.clone(),
        },
    );
    for (name, range) in [(&REMAINING, remaining), (&USED, used), (&RESET, reset)] {
        if let Ok(value) = field(range) {
            headers.insert(name.clone(), value);
        }
    }
    if let Some(Ok(value)) = retry.map(field) {
        headers.insert(RETRY_AFTER, value);
    }
    if ietf {
        let policy = if same_quota {
            limit.policy.clone()
        } else {
            policy_value(&limit.name, &decision.quota)
        };
        headers.insert(POLICY.clone(), policy);
        if let Some(Ok(value)) = current.map(field) {
            headers.insert(RATELIMIT.clone(), value);
        }
    }
}

/// The text of a decision's fields, one after the other.
struct Fields(Vec<u8>);

impl Fields {
    fn with_capacity(bytes: usize) -> Self {
        Self(Vec::with_capacity(bytes))
    }

    fn push_number(&mut self, value: u64) {
        self.0
            .extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
    }

    /// Appends `value` and says where it is.
    fn number(&mut self, value: u64) -> std::ops::Range<usize> {
        let begin = self.0.len();
        self.push_number(value);
        begin..self.0.len()
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
