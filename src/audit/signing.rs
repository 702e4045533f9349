//! Ed25519 keys for checkpoints (feature `audit-signing`): [`SigningKey`] signs, [`PublicKey`]
//! checks. Keys are the formats OpenSSL writes:
//!
//! ```text
//! openssl genpkey -algorithm ed25519 -out audit-signing.pem        # the private key (PKCS#8)
//! openssl pkey -in audit-signing.pem -pubout -out audit-public.pem # the public key (SPKI)
//! ```
//!
//! A key's id is a fingerprint of its public key (`ed25519:` and 16 hex digits), written in every
//! checkpoint: when the signing key changes, the verifier is given every public key in use over
//! the log's life and picks each checkpoint's by its id.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};

use super::chain::Position;
use super::checkpoint::Checkpoint;
use super::head::Head;

/// The DER prefix of an Ed25519 `SubjectPublicKeyInfo` (RFC 8410): the key's 32 bytes follow.
const SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// Why a key could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The file or variable could not be read.
    #[error("cannot read the key from {from}: {reason}")]
    Unreadable {
        /// The file or environment variable.
        from: String,
        /// Why.
        reason: String,
    },
    /// The text is not a key of the expected kind.
    #[error("not an Ed25519 {kind} key: {reason}")]
    Invalid {
        /// `private` or `public`.
        kind: &'static str,
        /// Why.
        reason: String,
    },
}

/// The private key that signs checkpoints; cheap to clone.
#[derive(Clone)]
pub struct SigningKey {
    pair: Arc<Ed25519KeyPair>,
    public: PublicKey,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the key itself.
        f.debug_struct("SigningKey")
            .field("id", &self.public.id)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// A new random key, for tests and for a first setup (save it with
    /// [`to_pkcs8_pem`](Self::to_pkcs8_pem)).
    ///
    /// # Errors
    /// The system's random source failed.
    pub fn generate() -> Result<Self, KeyError> {
        let pair = Ed25519KeyPair::generate().map_err(|e| invalid_private(e.to_string()))?;
        Ok(Self::from_pair(pair))
    }

    /// A key from PKCS#8 DER (v1, as OpenSSL writes it, or v2).
    ///
    /// # Errors
    /// [`KeyError::Invalid`] when it is not an Ed25519 private key.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, KeyError> {
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
            .map_err(|e| invalid_private(e.to_string()))?;
        Ok(Self::from_pair(pair))
    }

    /// A key from PEM (`-----BEGIN PRIVATE KEY-----`, PKCS#8), or from the base64 of its DER.
    ///
    /// # Errors
    /// [`KeyError::Invalid`] when it is neither.
    pub fn from_pem(text: &str) -> Result<Self, KeyError> {
        let der = pem_or_base64(text, "PRIVATE KEY").ok_or_else(|| {
            invalid_private("expected a PKCS#8 PEM block (BEGIN PRIVATE KEY) or its base64")
        })?;
        Self::from_pkcs8_der(&der)
    }

    /// A key from a PEM file.
    ///
    /// # Errors
    /// The file cannot be read, or holds no Ed25519 private key.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, KeyError> {
        Self::from_pem(&read_key_file(path.as_ref())?)
    }

    /// A key from an environment variable holding its PEM or the base64 of its DER.
    ///
    /// # Errors
    /// The variable is unset or not Unicode, or holds no Ed25519 private key.
    pub fn from_env(var: &str) -> Result<Self, KeyError> {
        let text = std::env::var(var).map_err(|e| KeyError::Unreadable {
            from: format!("${var}"),
            reason: e.to_string(),
        })?;
        Self::from_pem(&text)
    }

    /// The key as PKCS#8 PEM, to store it.
    ///
    /// # Errors
    /// The key could not be encoded.
    pub fn to_pkcs8_pem(&self) -> Result<String, KeyError> {
        let der = self
            .pair
            .to_pkcs8v1()
            .map_err(|e| invalid_private(e.to_string()))?;
        Ok(pem("PRIVATE KEY", der.as_ref()))
    }

    /// The public half, which the verifier is given.
    #[must_use]
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// The key's id, written in each checkpoint it signs.
    #[must_use]
    pub fn id(&self) -> &str {
        &self.public.id
    }

    /// Signs a checkpoint: sets its `key` and `signature`.
    pub(crate) fn sign(&self, checkpoint: &mut Checkpoint) {
        checkpoint.key = self.public.id.to_string();
        checkpoint.signature = self.pair.sign(&checkpoint.message()).as_ref().to_vec();
    }

    /// The head file's content for `position`, signed.
    pub(crate) fn sign_head(&self, position: Position) -> Head {
        let message = Head::message(&position, &self.public.id);
        Head {
            position,
            signature: Some((
                self.public.id.to_string(),
                self.pair.sign(&message).as_ref().to_vec(),
            )),
        }
    }

    fn from_pair(pair: Ed25519KeyPair) -> Self {
        let mut raw = [0; 32];
        raw.copy_from_slice(pair.public_key().as_ref());
        Self {
            pair: Arc::new(pair),
            public: PublicKey::from_raw(raw),
        }
    }
}

/// A public key that checks checkpoints.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    raw: [u8; 32],
    id: Arc<str>,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PublicKey").field(&self.id).finish()
    }
}

impl PublicKey {
    /// A key from its 32 raw bytes.
    #[must_use]
    pub fn from_raw(raw: [u8; 32]) -> Self {
        let digest = Sha256::digest(raw);
        let id = format!("ed25519:{}", hex::encode(&digest[..8]));
        Self { raw, id: id.into() }
    }

    /// A key from PEM (`-----BEGIN PUBLIC KEY-----`, SPKI, as `openssl pkey -pubout` writes
    /// it), or the base64 of its DER or of its 32 raw bytes.
    ///
    /// # Errors
    /// [`KeyError::Invalid`] when it is none of these.
    pub fn from_pem(text: &str) -> Result<Self, KeyError> {
        let der = pem_or_base64(text, "PUBLIC KEY").ok_or_else(|| {
            invalid_public("expected an SPKI PEM block (BEGIN PUBLIC KEY) or base64")
        })?;
        let raw = match der.len() {
            32 => der.as_slice(),
            44 if der.starts_with(&SPKI_PREFIX) => &der[SPKI_PREFIX.len()..],
            n => {
                return Err(invalid_public(format!(
                    "{n} bytes are neither an Ed25519 SubjectPublicKeyInfo nor a raw key"
                )));
            }
        };
        let mut key = [0; 32];
        key.copy_from_slice(raw);
        Ok(Self::from_raw(key))
    }

    /// A key from a PEM file.
    ///
    /// # Errors
    /// The file cannot be read, or holds no Ed25519 public key.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, KeyError> {
        Self::from_pem(&read_key_file(path.as_ref())?)
    }

    /// The key as SPKI PEM, as OpenSSL writes it.
    #[must_use]
    pub fn to_pem(&self) -> String {
        let mut der = SPKI_PREFIX.to_vec();
        der.extend_from_slice(&self.raw);
        pem("PUBLIC KEY", &der)
    }

    /// The key's id, as checkpoints name it.
    #[must_use]
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Whether `checkpoint` names this key and carries its valid signature.
    #[must_use]
    pub fn verifies(&self, checkpoint: &Checkpoint) -> bool {
        self.checks(
            &checkpoint.key,
            &checkpoint.message(),
            &checkpoint.signature,
        )
    }

    /// Whether `head` is signed, names this key and carries its valid signature.
    #[must_use]
    pub fn verifies_head(&self, head: &Head) -> bool {
        head.signature.as_ref().is_some_and(|(key, signature)| {
            self.checks(key, &Head::message(&head.position, key), signature)
        })
    }

    fn checks(&self, key: &str, message: &[u8], signature: &[u8]) -> bool {
        *key == *self.id
            && UnparsedPublicKey::new(&ED25519, &self.raw)
                .verify(message, signature)
                .is_ok()
    }
}

/// A key file's text.
fn read_key_file(path: &Path) -> Result<String, KeyError> {
    std::fs::read_to_string(path).map_err(|e| KeyError::Unreadable {
        from: path.display().to_string(),
        reason: e.to_string(),
    })
}

fn invalid_private(reason: impl Into<String>) -> KeyError {
    KeyError::Invalid {
        kind: "private",
        reason: reason.into(),
    }
}

fn invalid_public(reason: impl Into<String>) -> KeyError {
    KeyError::Invalid {
        kind: "public",
        reason: reason.into(),
    }
}

/// The DER inside a PEM block labelled `label`, or `text` itself read as base64.
fn pem_or_base64(text: &str, label: &str) -> Option<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let body = match text.find(&begin) {
        Some(at) => {
            let rest = &text[at + begin.len()..];
            &rest[..rest.find(&end)?]
        }
        None if text.contains("-----BEGIN") => return None,
        None => text,
    };
    let compact: String = body.split_whitespace().collect();
    STANDARD.decode(compact).ok()
}

fn pem(label: &str, der: &[u8]) -> String {
    let encoded = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in encoded.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checkpoint() -> Checkpoint {
        Checkpoint {
            seq: 9,
            hash: [3; 32],
            time: "2026-12-08T00:00:00.000000Z".into(),
            prev: [0; 32],
            key: String::new(),
            signature: Vec::new(),
        }
    }

    #[test]
    fn a_signed_checkpoint_checks_with_its_key_only() {
        let key = SigningKey::generate().unwrap();
        let other = SigningKey::generate().unwrap();
        let mut signed = checkpoint();
        key.sign(&mut signed);
        assert_eq!(signed.key, key.id());
        assert!(key.public_key().verifies(&signed));
        assert!(!other.public_key().verifies(&signed));
        let mut forged = signed.clone();
        forged.seq += 1;
        assert!(!key.public_key().verifies(&forged));
        // Claiming the right key id does not help a signature made with another key.
        let mut impostor = checkpoint();
        other.sign(&mut impostor);
        impostor.key = key.id().to_string();
        assert!(!key.public_key().verifies(&impostor));
    }

    #[test]
    fn keys_round_trip_through_pem_and_openssl_formats() {
        let key = SigningKey::generate().unwrap();
        let again = SigningKey::from_pem(&key.to_pkcs8_pem().unwrap()).unwrap();
        assert_eq!(again.id(), key.id());
        let public = PublicKey::from_pem(&key.public_key().to_pem()).unwrap();
        assert_eq!(&public, key.public_key());
        let raw = STANDARD.encode(key.public_key().raw);
        assert_eq!(PublicKey::from_pem(&raw).unwrap().id(), key.id());
        assert!(
            PublicKey::from_pem("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----")
                .is_err()
        );
        assert!(SigningKey::from_pem("not a key").is_err());
        assert!(format!("{key:?}").contains(key.id()));
    }
}
