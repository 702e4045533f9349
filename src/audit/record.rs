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
        let mut out = Vec::new();
        self.append_canonical(&mut out);
        out
    }

    /// Appends the record's [canonical](Self::canonical) bytes to `out`.
    pub(crate) fn append_canonical(&self, out: &mut Vec<u8>) {
        use Field::{Number, Optional, Text};
        write_canonical(
            out,
            [
                Text(&self.time),
                Text(&self.request_id),
                Optional(self.actor.as_deref()),
                Optional(self.actor_kind.as_deref()),
                Optional(self.session.as_deref()),
                Text(&self.action),
                Text(&self.resource),
                Optional(self.subject.as_deref()),
                Number(u64::from(self.status)),
                Optional(self.refused_by.as_deref()),
                Optional(self.source_ip.as_deref()),
                Optional(self.user_agent.as_deref()),
                Number(self.latency_us),
            ],
        );
    }
}

/// A value of the canonical form.
pub(crate) enum Field<'a> {
    Text(&'a str),
    /// Two texts with a space between them, written as one string (`GET /patients/{id}`).
    Joined(&'a str, &'a str),
    Optional(Option<&'a str>),
    Number(u64),
}

impl Field<'_> {
    /// The bytes of its text, before any escaping (a number's digits are counted in the slack).
    fn text_len(&self) -> usize {
        match self {
            Self::Text(text) | Self::Optional(Some(text)) => text.len(),
            Self::Joined(first, second) => first.len() + 1 + second.len(),
            Self::Optional(None) | Self::Number(_) => 20,
        }
    }

    /// The value as JSON.
    fn write(&self, out: &mut Vec<u8>) {
        match self {
            Self::Text(text) | Self::Optional(Some(text)) => json_string(out, text),
            Self::Joined(first, second) => {
                out.push(b'"');
                escaped(out, first);
                out.push(b' ');
                escaped(out, second);
                out.push(b'"');
            }
            Self::Optional(None) => out.extend_from_slice(b"null"),
            Self::Number(number) => {
                out.extend_from_slice(itoa::Buffer::new().format(*number).as_bytes());
            }
        }
    }
}

/// Defines `write_canonical` for the record's fields, named once, in canonical order: each
/// name with its punctuation is one literal, and a copy of a known length is inlined.
macro_rules! canonical_fields {
    ($first:ident $(, $rest:ident)*) => {
        /// Appends a record's canonical bytes, its values given in canonical order: written by
        /// hand rather than through serde, as a record is serialised on every PHI request. The
        /// bytes are serde_json's compact form, field for field (a test holds them to it), so
        /// chains written by either agree.
        pub(crate) fn write_canonical(out: &mut Vec<u8>, values: [Field<'_>; 13]) {
            // A name takes its length and four bytes: two quotes, a colon, a comma or brace.
            const NAMES: usize = stringify!($first).len() + 4 $(+ stringify!($rest).len() + 4)*;
            let text: usize = values.iter().map(|value| value.text_len() + 4).sum();
            out.reserve(NAMES + text + 1);
            let [$first $(, $rest)*] = values;
            out.extend_from_slice(concat!("{\"", stringify!($first), "\":").as_bytes());
            $first.write(out);
            $(
                out.extend_from_slice(concat!(",\"", stringify!($rest), "\":").as_bytes());
                $rest.write(out);
            )*
            out.push(b'}');
        }
    };
}

canonical_fields!(
    time, request_id, actor, actor_kind, session, action, resource, subject, status, refused_by,
    source_ip, user_agent, latency_us
);

/// A JSON string as serde_json writes it: `"` and `\\` escaped, control characters as their
/// short escape or `\u00xx`, everything else (DEL, non-ASCII) as it is.
fn json_string(out: &mut Vec<u8>, text: &str) {
    out.reserve(text.len() + 2);
    out.push(b'"');
    escaped(out, text);
    out.push(b'"');
}

/// Bytes looked at together when looking for one to escape: a branch-free test of a whole
/// block compiles to vector instructions, and almost every block of a record needs none.
const BLOCK: usize = 16;

/// The inside of a [`json_string`]: `text`, escaped.
fn escaped(out: &mut Vec<u8>, text: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = text.as_bytes();
    if is_plain(bytes) {
        out.extend_from_slice(bytes);
        return;
    }
    let (mut plain, mut at) = (0, 0);
    while at < bytes.len() {
        if let Some(block) = bytes.get(at..at + BLOCK)
            && is_plain_block(block)
        {
            at += BLOCK;
            continue;
        }
        let byte = bytes[at];
        at += 1;
        let escape: &[u8] = match byte {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => &[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(byte >> 4)],
                HEX[usize::from(byte & 0xf)],
            ],
            _ => continue,
        };
        out.extend_from_slice(&bytes[plain..at - 1]);
        out.extend_from_slice(escape);
        plain = at;
    }
    out.extend_from_slice(&bytes[plain..]);
}

/// Whether no byte of `bytes` needs an escape (what almost every string of a record is): a
/// block at a time, the last block overlapping the one before, so no byte is left to a loop of
/// its own.
fn is_plain(bytes: &[u8]) -> bool {
    match bytes.len().checked_sub(BLOCK) {
        None => is_plain_block(bytes),
        Some(last) => {
            bytes.chunks_exact(BLOCK).all(is_plain_block) && is_plain_block(&bytes[last..])
        }
    }
}

fn is_plain_block(block: &[u8]) -> bool {
    !block.iter().fold(false, |any, &b| any | needs_escape(b))
}

const fn needs_escape(byte: u8) -> bool {
    byte < 0x20 || byte == b'"' || byte == b'\\'
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
        assert_eq!(record.canonical(), serde_json::to_vec(&record).unwrap());
        let back: AuditRecord = serde_json::from_slice(&record.canonical()).unwrap();
        assert_eq!(
            back.canonical(),
            record.canonical(),
            "canonical bytes round trip"
        );
    }

    #[test]
    fn canonical_bytes_escape_as_serde_json_does() {
        let awkward = "q\"b\\s/\u{0}\u{1}\u{8}\t\n\u{b}\u{c}\r\u{1f} \u{7f}é漢😀";
        let record = AuditRecord {
            time: awkward.into(),
            request_id: String::new(),
            actor: Some(awkward.into()),
            actor_kind: None,
            session: Some("\\".into()),
            action: "\"".into(),
            resource: awkward.repeat(3),
            subject: Some(String::new()),
            status: u16::MAX,
            refused_by: None,
            source_ip: None,
            user_agent: Some(awkward.into()),
            latency_us: u64::MAX,
        };
        assert_eq!(
            String::from_utf8(record.canonical()).unwrap(),
            serde_json::to_string(&record).unwrap()
        );
    }

    /// Strings are scanned a block at a time: an escape must be found wherever it falls, at a
    /// block's first byte, its last, or in a short tail after the last whole block.
    #[test]
    fn escapes_are_found_at_every_position_of_a_block() {
        for length in 0..48 {
            for at in 0..length {
                for escaped in ['"', '\\', '\n', '\u{1}', '\u{1f}'] {
                    let mut text: Vec<char> =
                        "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOP"
                            .chars()
                            .take(length)
                            .collect();
                    text[at] = escaped;
                    let text: String = text.into_iter().collect();
                    let mut ours = Vec::new();
                    json_string(&mut ours, &text);
                    assert_eq!(
                        String::from_utf8(ours).unwrap(),
                        serde_json::to_string(&text).unwrap(),
                        "{text:?}"
                    );
                }
            }
        }
    }
}
