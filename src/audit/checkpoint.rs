//! Checkpoints: signed statements of where the hash chain stood, chained to each other.
//!
//! A checkpoint seals every record up to and including sequence number `seq`, whose hash is
//! `hash`. It names the time it was made, the hash of the checkpoint line before it (`prev`; the
//! first one's is all zeros) and the signing key's id (`key`), and carries an Ed25519 signature
//! over those fields. The file sink appends one line per checkpoint to `<log>.checkpoints`:
//!
//! ```text
//! {"seq":999,"hash":"<64 hex>","time":"2026-12-08T00:12:04.000000Z","prev":"<64 hex>","key":"ed25519:<16 hex>","sig":"<base64url>"}
//! ```
//!
//! An attacker who can rewrite the log and recompute its hashes cannot make a checkpoint for
//! the rewritten chain without the private key, nor drop a checkpoint from the middle of the
//! file (the next one's `prev` names it). The signature covers the bytes of
//! [`Checkpoint::message`], so the verifier needs no JSON canonicalisation.
//!
//! The format needs no cryptography to read; signing and checking signatures are in
//! [`SigningKey`](super::SigningKey) and [`PublicKey`](super::PublicKey) (feature
//! `audit-signing`).

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use super::chain::{Anchor, AnchorSource, Position};
use super::record::AuditRecord;

/// Why a checkpoint file is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CheckpointFault {
    /// There is no checkpoint file, or it holds no checkpoint.
    Missing,
    /// The line is not a checkpoint line (a blank line, CRLF endings, a hand edit).
    Malformed,
    /// The last line has no newline: a torn write, or a cut file.
    Torn,
    /// Its `prev` is not the hash of the checkpoint line before it: one was removed, inserted
    /// or changed.
    BrokenChain,
    /// It names a key none of the given public keys has.
    UnknownKey {
        /// The key id it names.
        key: String,
    },
    /// Its signature does not check with the key it names.
    BadSignature,
    /// It seals no more records than the checkpoint before it.
    NotAfter,
    /// It is signed with a key that another key followed in an earlier checkpoint: a retired
    /// key signs nothing after its successor did.
    RetiredKey {
        /// The key id it names.
        key: String,
    },
}

impl fmt::Display for CheckpointFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing => f.write_str("no checkpoints (the sink signs none, or the file was removed)"),
            Self::Malformed => f.write_str("not a checkpoint line"),
            Self::Torn => f.write_str("a torn last checkpoint (no newline)"),
            Self::BrokenChain => f.write_str(
                "does not follow the checkpoint before it (checkpoints removed, inserted or changed)",
            ),
            Self::UnknownKey { key } => {
                write!(f, "signed with key {key}, which is not among the public keys given")
            }
            Self::BadSignature => f.write_str("its signature does not check"),
            Self::NotAfter => f.write_str("seals no more records than the one before it"),
            Self::RetiredKey { key } => write!(
                f,
                "signed with key {key}, which a later key replaced in an earlier checkpoint"
            ),
        }
    }
}

/// The hash before the first checkpoint.
pub const FIRST_PREV: [u8; 32] = [0; 32];

/// What the signature's message starts with: a signature made for anything else never checks.
const DOMAIN: &[u8] = b"api-policy audit checkpoint v1\n";

/// One checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The sequence number of the last record it seals.
    pub seq: u64,
    /// That record's hash.
    pub hash: [u8; 32],
    /// When it was made, RFC 3339 UTC with microseconds (as records' `time`).
    pub time: String,
    /// The hash of the checkpoint line before it ([`FIRST_PREV`] for the first).
    pub prev: [u8; 32],
    /// The signing key's id: `ed25519:` and the first 8 bytes of the SHA-256 of the raw public
    /// key, in hex (a fingerprint, so a verifier finds the key without a registry).
    pub key: String,
    /// The Ed25519 signature of [`message`](Self::message).
    pub signature: Vec<u8>,
}

impl Checkpoint {
    /// The bytes the signature covers: a domain tag, then every field but the signature, one
    /// per line.
    #[must_use]
    pub fn message(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(DOMAIN.len() + 200);
        out.extend_from_slice(DOMAIN);
        for field in [
            itoa::Buffer::new().format(self.seq).as_bytes(),
            hex::encode(self.hash).as_bytes(),
            self.time.as_bytes(),
            hex::encode(self.prev).as_bytes(),
            self.key.as_bytes(),
        ] {
            out.extend_from_slice(field);
            out.push(b'\n');
        }
        out
    }

    /// The checkpoint as one line of the checkpoint file, without its newline.
    #[must_use]
    pub fn line(&self) -> Vec<u8> {
        // Every field is digits, hex, base64url or an id and a time the crate made, so none
        // needs escaping; `parse` refuses a line that would.
        format!(
            "{{\"seq\":{},\"hash\":\"{}\",\"time\":\"{}\",\"prev\":\"{}\",\"key\":\"{}\",\"sig\":\"{}\"}}",
            self.seq,
            hex::encode(self.hash),
            self.time,
            hex::encode(self.prev),
            self.key,
            URL_SAFE_NO_PAD.encode(&self.signature),
        )
        .into_bytes()
    }

    /// Reads a line back (without its newline); `None` when it is not exactly a checkpoint
    /// line as [`line`](Self::line) writes it.
    #[must_use]
    pub fn parse(line: &[u8]) -> Option<Checkpoint> {
        let text = std::str::from_utf8(line).ok()?;
        let rest = text.strip_prefix("{\"seq\":")?;
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let seq = rest[..digits].parse().ok()?;
        let rest = rest[digits..].strip_prefix(",\"hash\":\"")?;
        let (hash, rest) = rest.split_once("\",\"time\":\"")?;
        let (time, rest) = rest.split_once("\",\"prev\":\"")?;
        let (prev, rest) = rest.split_once("\",\"key\":\"")?;
        let (key, rest) = rest.split_once("\",\"sig\":\"")?;
        let sig = rest.strip_suffix("\"}")?;
        let plain = |s: &str| {
            s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'.' | b'-' | b'_'))
        };
        if !(plain(time) && plain(key) && plain(sig)) {
            return None;
        }
        let checkpoint = Checkpoint {
            seq,
            hash: hash32(hash)?,
            time: time.to_string(),
            prev: hash32(prev)?,
            key: key.to_string(),
            signature: URL_SAFE_NO_PAD.decode(sig).ok()?,
        };
        // One spelling only: a line that reads back but writes differently was not written
        // by the crate.
        (checkpoint.line() == line).then_some(checkpoint)
    }

    /// The hash the next checkpoint's `prev` names: SHA-256 of this one's line.
    #[must_use]
    pub fn line_hash(line: &[u8]) -> [u8; 32] {
        Sha256::digest(line).into()
    }

    /// The point of the chain it pins, as an anchor for
    /// [`verify_anchored`](super::chain::verify_anchored); `line` is its 1-based line in the
    /// checkpoint file.
    #[must_use]
    pub fn anchor(&self, line: usize) -> Anchor {
        Anchor {
            position: Position {
                next_seq: self.seq.saturating_add(1),
                head: self.hash,
            },
            source: AnchorSource::Checkpoint { line },
        }
    }

    /// The checkpoint as an audit record, so any [`AuditSink`](super::AuditSink) (a Redis
    /// stream, a SIEM) can keep a copy apart from the log: `action` is `CHECKPOINT`, `resource`
    /// the log's file name, `subject` the checkpoint line, `actor` the key id.
    #[must_use]
    pub fn to_record(&self, log_name: &str) -> AuditRecord {
        AuditRecord {
            time: self.time.clone(),
            request_id: format!("checkpoint-{}", self.seq),
            actor: Some(self.key.clone()),
            actor_kind: Some("audit_signer".into()),
            session: None,
            action: "CHECKPOINT".into(),
            resource: log_name.to_string(),
            subject: Some(String::from_utf8_lossy(&self.line()).into_owned()),
            status: 200,
            refused_by: None,
            source_ip: None,
            user_agent: None,
            latency_us: 0,
        }
    }

    /// The checkpoint a record made by [`to_record`](Self::to_record) carries.
    #[must_use]
    pub fn from_record(record: &AuditRecord) -> Option<Checkpoint> {
        if record.action != "CHECKPOINT" {
            return None;
        }
        Checkpoint::parse(record.subject.as_deref()?.as_bytes())
    }
}

/// A checkpoint read back from a checkpoint file.
#[cfg(feature = "audit-signing")]
pub(crate) struct Chained {
    /// Its 1-based line.
    pub(crate) line: usize,
    pub(crate) checkpoint: Checkpoint,
    /// How many records it seals.
    pub(crate) sealed: u64,
    /// The hash the next checkpoint's `prev` must name.
    pub(crate) line_hash: [u8; 32],
}

/// A checkpoint file's lines, in order, checked as a chain: each a checkpoint line ending in a
/// newline, naming the hash of the line before it, and sealing more records than the one
/// before. Signatures are the caller's to check: it knows which keys it trusts.
///
/// # Errors
/// The first line at fault, and why.
#[cfg(feature = "audit-signing")]
pub(crate) fn read_chain(bytes: &[u8]) -> Result<Vec<Chained>, (usize, CheckpointFault)> {
    let mut chain: Vec<Chained> = Vec::new();
    for (index, line) in bytes.split_inclusive(|&b| b == b'\n').enumerate() {
        let number = index + 1;
        let fault = |fault| Err((number, fault));
        let Some(line) = line.strip_suffix(b"\n") else {
            return fault(CheckpointFault::Torn);
        };
        // A checkpoint past the last sequence number is not one a sink wrote.
        let Some((checkpoint, sealed)) =
            Checkpoint::parse(line).and_then(|c| c.seq.checked_add(1).map(|n| (c, n)))
        else {
            return fault(CheckpointFault::Malformed);
        };
        let before = chain.last();
        if checkpoint.prev != before.map_or(FIRST_PREV, |b| b.line_hash) {
            return fault(CheckpointFault::BrokenChain);
        }
        if before.is_some_and(|b| sealed <= b.sealed) {
            return fault(CheckpointFault::NotAfter);
        }
        chain.push(Chained {
            line: number,
            line_hash: Checkpoint::line_hash(line),
            checkpoint,
            sealed,
        });
    }
    Ok(chain)
}

fn hash32(hex_text: &str) -> Option<[u8; 32]> {
    let mut out = [0; 32];
    hex::decode_to_slice(hex_text, &mut out).ok()?;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Checkpoint {
        Checkpoint {
            seq: 41,
            hash: [7; 32],
            time: "2026-12-08T00:12:04.000000Z".into(),
            prev: FIRST_PREV,
            key: "ed25519:0123456789abcdef".into(),
            signature: vec![1; 64],
        }
    }

    #[test]
    fn a_line_reads_back_and_only_its_own_spelling_does() {
        let line = sample().line();
        assert_eq!(Checkpoint::parse(&line), Some(sample()));
        let spaced = String::from_utf8(line.clone())
            .unwrap()
            .replace(":41,", ": 41,");
        assert_eq!(Checkpoint::parse(spaced.as_bytes()), None);
        let mut crlf = line.clone();
        crlf.push(b'\r');
        assert_eq!(Checkpoint::parse(&crlf), None);
        assert_eq!(Checkpoint::parse(b""), None);
        let record = sample().to_record("phi.log");
        assert_eq!(Checkpoint::from_record(&record), Some(sample()));
    }

    #[test]
    fn the_message_covers_every_field_but_the_signature() {
        let base = sample().message();
        let mut other = sample();
        other.signature = vec![2; 64];
        assert_eq!(other.message(), base);
        for change in [
            |c: &mut Checkpoint| c.seq += 1,
            |c: &mut Checkpoint| c.hash[0] ^= 1,
            |c: &mut Checkpoint| c.time.push('0'),
            |c: &mut Checkpoint| c.prev[31] ^= 1,
            |c: &mut Checkpoint| c.key.push('0'),
        ] {
            let mut changed = sample();
            change(&mut changed);
            assert_ne!(changed.message(), base);
        }
    }
}
