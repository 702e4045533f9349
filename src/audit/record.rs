//! [`AuditRecord`]: one access to PHI, and its canonical bytes.

use serde::{Deserialize, Serialize};

/// One request to a PHI route: who, what, when, from where, with what outcome (45 CFR
/// 164.312(b); NIST 800-53 AU-3; the fields of a FHIR AuditEvent). Never a body, never the
/// `Authorization` value; the query string is redacted unless allowed by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AuditRecord {
    /// When the request arrived, RFC 3339 UTC with microseconds.
    pub time: String,
    /// The request id (`X-Request-Id`, or one the layer made).
    pub request_id: String,
    /// Who: the principal's id (the token's `sub`, a client id), when known.
    pub actor: Option<String>,
    /// `user`, `service` or `anonymous`, when a principal was known.
    pub actor_kind: Option<String>,
    /// The session id (`sid`), when the token carried one.
    pub session: Option<String>,
    /// What: the method and the route template, `GET /api/v2/patients/{id}`.
    pub action: String,
    /// The path, with the query string redacted.
    pub resource: String,
    /// The patient or record id, from the configured path parameter.
    pub subject: Option<String>,
    /// The answer's status.
    pub status: u16,
    /// The stable error code of a policy's refusal (`insufficient_scope`,
    /// `rate_limit_exceeded`), when one answered.
    pub refused_by: Option<String>,
    /// The client's address (trusted-proxy aware).
    pub source_ip: Option<String>,
    /// The `User-Agent`, shortened to 256 bytes.
    pub user_agent: Option<String>,
    /// Microseconds from the request's arrival to its answer's headers.
    pub latency_us: u64,
}

impl AuditRecord {
    /// The `time` field for a moment in microseconds since the UNIX epoch:
    /// `2026-11-24T05:58:26.123456Z`.
    #[must_use]
    pub fn timestamp(micros: u64) -> String {
        crate::clock::rfc3339_micros(micros)
    }

    /// The record's canonical bytes: compact JSON, fields in declaration order, every field
    /// present (absent ones as `null`). What the hash chain covers.
    #[must_use]
    pub fn canonical(&self) -> Vec<u8> {
        // Strings and numbers always serialise; an empty object would break the chain visibly.
        serde_json::to_vec(self).unwrap_or_else(|_| b"{}".to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_bytes_keep_every_field_in_order() {
        let record = AuditRecord {
            time: AuditRecord::timestamp(1_795_521_600_000_042),
            request_id: "req-1".into(),
            actor: Some("pat_1".into()),
            actor_kind: Some("user".into()),
            session: None,
            action: "GET /api/v2/patients/{id}".into(),
            resource: "/api/v2/patients/pat_1".into(),
            subject: Some("pat_1".into()),
            status: 200,
            refused_by: None,
            source_ip: Some("192.0.2.1".into()),
            user_agent: Some("curl/8".into()),
            latency_us: 1234,
        };
        assert_eq!(
            String::from_utf8(record.canonical()).unwrap(),
            r#"{"time":"2026-11-24T12:00:00.000042Z","request_id":"req-1","actor":"pat_1","actor_kind":"user","session":null,"action":"GET /api/v2/patients/{id}","resource":"/api/v2/patients/pat_1","subject":"pat_1","status":200,"refused_by":null,"source_ip":"192.0.2.1","user_agent":"curl/8","latency_us":1234}"#
        );
        let back: AuditRecord = serde_json::from_slice(&record.canonical()).unwrap();
        assert_eq!(
            back.canonical(),
            record.canonical(),
            "canonical bytes round trip"
        );
    }
}
