//! [`Draft`]: a record as the request and its answer hold it, formatted only when written.
//!
//! While its request is served, a record keeps cheap handles (the URI, header values, the
//! principal: counted references) rather than strings of its own. Once the answer is in, they
//! are formatted straight into the record's canonical bytes and let go: the URI and header
//! values share the connection's read buffer, which the connection reuses only once nothing
//! holds it, so they must not wait in a queue.

use std::borrow::Cow;
use std::io::Write as _;
use std::net::IpAddr;

use http::{HeaderValue, Method, Uri};

use super::policy::Coverage;
use super::record::{Field, write_canonical};
use crate::principal::{Principal, PrincipalKind};

/// The longest `User-Agent` a record keeps, in bytes.
const USER_AGENT_MAX: usize = 256;

/// One request's record, before it is written.
pub(crate) struct Draft {
    /// Which of the layer's PHI routes ([`Coverage::routes`]) the request matched.
    pub(crate) route: usize,
    /// When the request arrived, in microseconds since the UNIX epoch.
    pub(crate) micros: u64,
    pub(crate) request_id: HeaderValue,
    pub(crate) method: Method,
    /// The target as the request arrived, before any inner layer rewrote it.
    pub(crate) uri: Uri,
    pub(crate) source_ip: Option<IpAddr>,
    pub(crate) user_agent: Option<HeaderValue>,
    /// Who, as the auth layer copied it to the answer.
    pub(crate) principal: Option<Principal>,
    pub(crate) status: u16,
    pub(crate) refused_by: Option<Cow<'static, str>>,
    pub(crate) latency_us: u64,
}

impl Draft {
    /// The record's canonical bytes (those of
    /// [`AuditRecord::canonical`](super::AuditRecord::canonical)); `coverage` is the layer's,
    /// for the action, the subject and the redacted resource.
    pub(crate) fn canonical(&self, coverage: &Coverage) -> Vec<u8> {
        let mut out = Vec::new();
        self.append_canonical(coverage, &mut out);
        out
    }

    /// Appends the record's [canonical](Self::canonical) bytes to `out`.
    pub(crate) fn append_canonical(&self, coverage: &Coverage, out: &mut Vec<u8>) {
        use Field::{Joined, Number, Optional, Text};
        let time = crate::clock::rfc3339_micros_ascii(self.micros);
        let route = coverage.routes.at(self.route);
        let template = route.as_ref().map_or("", |r| r.pattern.template());
        let path = self.uri.path();
        let redacted = self.uri.query().filter(|q| !q.is_empty()).map(|query| {
            let mut resource = String::with_capacity(path.len() + query.len() + 16);
            redact_into(&mut resource, path, query, &coverage.allowed_query);
            resource
        });
        let subject = route.as_ref().and_then(|r| {
            let name = r.value.subject_param.as_deref()?;
            r.pattern.params(path).find(|(n, _)| *n == name)
        });
        let mut ip = [0u8; 48];
        let ip = self.source_ip.and_then(|source| {
            let mut cursor = std::io::Cursor::new(&mut ip[..]);
            write!(cursor, "{source}").ok()?;
            let written = usize::try_from(cursor.position()).ok()?;
            std::str::from_utf8(ip.get(..written)?).ok()
        });
        let user_agent = self
            .user_agent
            .as_ref()
            .map(|v| String::from_utf8_lossy(v.as_bytes()));
        let principal = self.principal.as_deref();
        write_canonical(
            out,
            [
                Text(std::str::from_utf8(&time).unwrap_or_default()),
                Text(self.request_id.to_str().unwrap_or_default()),
                Optional(principal.map(|p| &*p.id)),
                Optional(principal.map(|p| kind_name(&p.kind))),
                Optional(principal.and_then(|p| p.session_id.as_deref())),
                // A pattern that names its method (`POST /orders`) is the action as it stands.
                if template.starts_with('/') || template == "*" {
                    Joined(self.method.as_str(), template)
                } else {
                    Text(template)
                },
                Text(redacted.as_deref().unwrap_or(path)),
                Optional(subject.as_ref().map(|(_, value)| &**value)),
                Number(u64::from(self.status)),
                Optional(self.refused_by.as_deref()),
                Optional(ip),
                Optional(
                    user_agent
                        .as_deref()
                        .map(|ua| shortened(ua, USER_AGENT_MAX)),
                ),
                Number(self.latency_us),
            ],
        );
    }
}

fn kind_name(kind: &PrincipalKind) -> &'static str {
    match kind {
        PrincipalKind::User => "user",
        PrincipalKind::Service => "service",
        _ => "anonymous",
    }
}

/// The path and its query, every value redacted but the allowed ones: a query string can hold
/// PHI (a name, a date of birth) and the record must hold the minimum necessary.
fn redact_into(out: &mut String, path: &str, query: &str, allowed: &[String]) {
    out.push_str(path);
    for (at, pair) in query.split('&').enumerate() {
        out.push(if at == 0 { '?' } else { '&' });
        match pair.split_once('=') {
            Some((name, value)) if allowed.iter().any(|a| a == name) => {
                out.push_str(name);
                out.push('=');
                out.push_str(value);
            }
            Some((name, _)) => {
                out.push_str(name);
                out.push_str("=REDACTED");
            }
            // A bare item (`?Ada+Lovelace`) is a value, not a name: nothing of it is kept.
            None => out.push_str("REDACTED"),
        }
    }
}

/// At most `max` bytes, cut at a character boundary.
fn shortened(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::AuditRecord;
    use crate::audit::policy::PhiRoute;
    use crate::route::RouteMatcher;

    fn coverage() -> Coverage {
        let routes = RouteMatcher::new()
            .add(
                "/api/{version}/patients/{id}",
                PhiRoute {
                    subject_param: Some("id".into()),
                    cache_control: None,
                },
            )
            .and_then(|routes| {
                routes.add(
                    "POST /clinic.Records/Get",
                    PhiRoute {
                        subject_param: None,
                        cache_control: None,
                    },
                )
            })
            .unwrap();
        Coverage {
            routes,
            allowed_query: vec!["page".into()],
        }
    }

    fn canonical(draft: &Draft) -> String {
        String::from_utf8(draft.canonical(&coverage())).unwrap()
    }

    /// A draft's bytes are those of the record it stands for, field for field: the redacted
    /// query, the decoded subject, the principal's fields, an IPv6 address, a user agent cut
    /// at a character boundary, escapes.
    #[test]
    fn a_draft_writes_the_canonical_bytes_of_its_record() {
        let agent = format!("{}é\"tail", "a".repeat(255));
        let draft = Draft {
            route: 0,
            micros: 1_795_521_600_000_042,
            request_id: HeaderValue::from_static("req-\\1"),
            method: Method::GET,
            uri: "/api/v2/patients/pat%201?name=Ada&page=2".parse().unwrap(),
            source_ip: Some("2001:db8::1".parse().unwrap()),
            user_agent: Some(HeaderValue::from_str(&agent).unwrap()),
            principal: Some(Principal::user("dr_\"1").with_session("s-9")),
            status: 403,
            refused_by: Some(Cow::Borrowed("insufficient_scope")),
            latency_us: 1234,
        };
        let record = AuditRecord {
            time: "2026-11-24T12:00:00.000042Z".into(),
            request_id: "req-\\1".into(),
            actor: Some("dr_\"1".into()),
            actor_kind: Some("user".into()),
            session: Some("s-9".into()),
            action: "GET /api/{version}/patients/{id}".into(),
            resource: "/api/v2/patients/pat%201?name=REDACTED&page=2".into(),
            subject: Some("pat 1".into()),
            status: 403,
            refused_by: Some("insufficient_scope".into()),
            source_ip: Some("2001:db8::1".into()),
            // 255 bytes of `a`, then `é` would straddle byte 256: it is left out.
            user_agent: Some("a".repeat(255)),
            latency_us: 1234,
        };
        assert_eq!(
            canonical(&draft),
            String::from_utf8(record.canonical()).unwrap()
        );
    }

    /// Without a principal, an address, a user agent or a query; and a pattern that names its
    /// method, which is the action as it stands.
    #[test]
    fn a_bare_draft_writes_nulls_and_a_named_methods_action() {
        let draft = Draft {
            route: 1,
            micros: 0,
            request_id: HeaderValue::from_static("r"),
            method: Method::POST,
            uri: "/clinic.Records/Get?".parse().unwrap(),
            source_ip: None,
            user_agent: None,
            principal: None,
            status: 499,
            refused_by: None,
            latency_us: 0,
        };
        assert_eq!(
            canonical(&draft),
            r#"{"time":"1970-01-01T00:00:00.000000Z","request_id":"r","actor":null,"actor_kind":null,"session":null,"action":"POST /clinic.Records/Get","resource":"/clinic.Records/Get","subject":null,"status":499,"refused_by":null,"source_ip":null,"user_agent":null,"latency_us":0}"#
        );
    }

    #[test]
    fn query_values_are_redacted_unless_allowed_by_name() {
        let mut out = String::new();
        redact_into(
            &mut out,
            "/patients",
            "name=Ada&page=2&Ada+Lovelace&dob=",
            &["page".to_string()],
        );
        assert_eq!(out, "/patients?name=REDACTED&page=2&REDACTED&dob=REDACTED");
    }

    #[test]
    fn shortening_cuts_at_a_character_boundary() {
        assert_eq!(shortened("abc", 3), "abc");
        assert_eq!(shortened("abcd", 3), "abc");
        // `é` is two bytes: a cut inside it falls back to before it.
        assert_eq!(shortened("abé", 3), "ab");
    }
}
