//! What makes two requests "the same request": method, path, query and body.

use std::fmt;

use http::{Method, Uri};
use sha2::{Digest, Sha256};

/// A SHA-256 digest of a request's method, path, query and body. A key reused with a different
/// fingerprint is a client bug (422), never a replay.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// The fingerprint of a request. The parts are separated by NUL, which none of method, path
    /// or query can hold, so no two different requests hash the same input.
    #[must_use]
    pub fn of_request(method: &Method, uri: &Uri, body: &[u8]) -> Self {
        let mut hash = Sha256::new();
        hash.update(method.as_str());
        hash.update([0]);
        hash.update(uri.path());
        hash.update([0]);
        hash.update(uri.query().unwrap_or(""));
        hash.update([0]);
        hash.update(body);
        Self(hash.finalize().into())
    }

    /// The fingerprint of some bytes (a webhook payload).
    #[must_use]
    pub fn of_bytes(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }

    /// The digest as lowercase hex, as the Redis store keeps it.
    #[must_use]
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Reads [`to_hex`](Self::to_hex)'s output back.
    #[must_use]
    pub fn from_hex(hex: &str) -> Option<Self> {
        let mut bytes = [0; 32];
        hex::decode_to_slice(hex, &mut bytes).ok()?;
        Some(Self(bytes))
    }

    /// The raw digest.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({})", self.to_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp(method: &str, uri: &str, body: &str) -> Fingerprint {
        Fingerprint::of_request(
            &Method::from_bytes(method.as_bytes()).unwrap(),
            &uri.parse().unwrap(),
            body.as_bytes(),
        )
    }

    #[test]
    fn every_part_counts_and_only_those() {
        let base = fp("POST", "/a?x=1", "{}");
        assert_eq!(base, fp("POST", "/a?x=1", "{}"));
        assert_eq!(
            base,
            fp("POST", "http://other.example/a?x=1", "{}"),
            "authority is not part"
        );
        for other in [
            fp("PATCH", "/a?x=1", "{}"),
            fp("POST", "/b?x=1", "{}"),
            fp("POST", "/a?x=2", "{}"),
            fp("POST", "/a", "{}"),
            fp("POST", "/a?x=1", "{ }"),
            // Moving bytes between parts changes the hash: the separators see to it.
            fp("POST", "/a?x=1{", "}"),
        ] {
            assert_ne!(base, other);
        }
    }

    #[test]
    fn hex_round_trips() {
        let f = fp("POST", "/a", "x");
        assert_eq!(Fingerprint::from_hex(&f.to_hex()), Some(f));
        assert_eq!(Fingerprint::from_hex("zz"), None);
    }
}
