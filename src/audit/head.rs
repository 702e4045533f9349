//! [`Head`]: the line of the file sink's head file, `<log>.head`, rewritten after every commit:
//! the next sequence number and the last record's hash, and, when the sink signs checkpoints,
//! the key's id and a signature of both:
//!
//! ```text
//! 120345 5e1c...<64 hex>
//! 120345 5e1c...<64 hex> ed25519:4f0c9a1b2c3d4e5f <base64url signature>
//! ```
//!
//! Unsigned, it tells a cleanly cut tail from a complete log to anyone who did not also rewrite
//! it. Signed, it vouches for the records after the last checkpoint: a forger cannot move it
//! without the key, so the sink will not seal records it did not write, and the verifier
//! refuses a head rewritten to match a rewritten log.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::chain::Position;

/// What a signature of a head covers starts with: one made for anything else never checks.
const DOMAIN: &[u8] = b"api-policy audit head v1\n";

/// The head file's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// Where the chain stood after the last commit.
    pub position: Position,
    /// The signing key's id and its signature of [`message`](Self::message), when the sink
    /// signs.
    pub signature: Option<(String, Vec<u8>)>,
}

impl Head {
    /// The bytes a signature covers: a domain tag, the next sequence number, the hash and the
    /// key's id, one per line.
    #[must_use]
    pub fn message(position: &Position, key: &str) -> Vec<u8> {
        let mut out = DOMAIN.to_vec();
        for field in [
            itoa::Buffer::new().format(position.next_seq).as_bytes(),
            hex::encode(position.head).as_bytes(),
            key.as_bytes(),
        ] {
            out.extend_from_slice(field);
            out.push(b'\n');
        }
        out
    }

    /// The head file's line, with its newline.
    #[must_use]
    pub fn line(&self) -> Vec<u8> {
        let mut line = format!(
            "{} {}",
            self.position.next_seq,
            hex::encode(self.position.head)
        );
        if let Some((key, signature)) = &self.signature {
            line.push(' ');
            line.push_str(key);
            line.push(' ');
            line.push_str(&URL_SAFE_NO_PAD.encode(signature));
        }
        line.push('\n');
        line.into_bytes()
    }

    /// Reads a head file's content back: the line [`line`](Self::line) writes, with any white
    /// space after it (a shorter line written over a longer one leaves none, but an edit may);
    /// `None` when it is anything else.
    #[must_use]
    pub fn parse(text: &[u8]) -> Option<Head> {
        let text = std::str::from_utf8(text).ok()?.trim_end();
        let mut fields = text.split(' ');
        let (seq, hash) = (fields.next()?, fields.next()?);
        let signature = match (fields.next(), fields.next(), fields.next()) {
            (None, _, _) => None,
            (Some(key), Some(signature), None) => {
                Some((key.to_string(), URL_SAFE_NO_PAD.decode(signature).ok()?))
            }
            _ => return None,
        };
        let mut head = [0; 32];
        hex::decode_to_slice(hash, &mut head).ok()?;
        let parsed = Head {
            position: Position {
                next_seq: seq.parse().ok()?,
                head,
            },
            signature,
        };
        // One spelling only (no `+`, leading zeros or upper-case hex).
        (parsed.line().trim_ascii_end() == text.as_bytes()).then_some(parsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_read_back_in_their_one_spelling() {
        let plain = Head {
            position: Position {
                next_seq: 40,
                head: [0xab; 32],
            },
            signature: None,
        };
        let signed = Head {
            signature: Some(("ed25519:0011223344556677".into(), vec![9; 64])),
            ..plain.clone()
        };
        for head in [&plain, &signed] {
            assert_eq!(Head::parse(&head.line()).as_ref(), Some(head));
        }
        let padded = [plain.line().trim_ascii_end(), b"      \n"].concat();
        assert_eq!(Head::parse(&padded), Some(plain.clone()));
        let text = String::from_utf8(plain.line()).unwrap();
        for odd in [
            text.replace("40 ", "040 "),
            text.replace("40 ", "+40 "),
            text.to_uppercase(),
            format!(" {text}"),
            "40\n".into(),
            String::new(),
        ] {
            assert_eq!(Head::parse(odd.as_bytes()), None, "{odd:?}");
        }
        assert_ne!(
            Head::message(&plain.position, "a"),
            Head::message(&plain.position, "b")
        );
    }
}
