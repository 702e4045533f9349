//! A bounded cache of verified tokens, so a repeated token skips its signature check.
//!
//! Keyed by a digest of the token (the cache never holds a bearer token itself), each entry lives
//! until the token's `exp` at most, and belongs to one generation of the keys: a key rotation
//! empties it of what older keys verified. Revocation is checked on every request, cached or not,
//! and a revoked token is dropped from the cache when it is seen.
//!
//! The digest is a 128-bit SipHash-1-3 under a random key drawn for each cache: a MAC of the
//! token. To be mistaken for a cached token, a forgery would need the same 128-bit tag under a key
//! it never sees, which is as out of reach as a SHA-256 collision, and SipHash reads a 600-byte
//! token about three times faster than SHA-256 does (the digest is most of a cache hit's cost).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use siphasher::sip128::{Hasher128, SipHasher13};

use super::claims::ErasedClaims;
use crate::backend::memory::{Slot, SlotTable, Visit};
use crate::principal::Principal;

/// What verifying a token established.
#[derive(Debug)]
pub(crate) struct Verified {
    pub(crate) principal: Principal,
    pub(crate) claims: ErasedClaims,
    pub(crate) jti: Option<Arc<str>>,
    /// `exp` in microseconds, if the token has one.
    pub(crate) expires_us: Option<u64>,
}

struct Cached {
    verified: Arc<Verified>,
    expires_us: u64,
    epoch: u64,
}

impl Slot for Cached {
    fn is_idle(&self, now_us: u64) -> bool {
        now_us >= self.expires_us
    }

    fn debt(&self, now_us: u64) -> u64 {
        self.expires_us.saturating_sub(now_us)
    }
}

/// The hex digest of a token, on the stack.
struct TokenDigest([u8; 32]);

impl TokenDigest {
    fn of(key: &DigestKey, token: &[u8]) -> Self {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut hasher = SipHasher13::new_with_keys(key.0, key.1);
        std::hash::Hasher::write(&mut hasher, token);
        let digest = hasher.finish128().as_bytes();
        let mut out = [0u8; 32];
        for (i, byte) in digest.iter().enumerate() {
            out[2 * i] = HEX[usize::from(byte >> 4)];
            out[2 * i + 1] = HEX[usize::from(byte & 0x0f)];
        }
        Self(out)
    }

    fn as_str(&self) -> &str {
        // Only ASCII hex digits were written.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

const BUCKET: &str = "jwt";

/// The secret key of the digest.
struct DigestKey(u64, u64);

impl DigestKey {
    fn random() -> Result<Self, aws_lc_rs::error::Unspecified> {
        let mut bytes = [0u8; 16];
        aws_lc_rs::rand::fill(&mut bytes)?;
        let (a, b) = bytes.split_at(8);
        let word = |half: &[u8]| u64::from_le_bytes(half.try_into().unwrap_or([0; 8]));
        Ok(Self(word(a), word(b)))
    }
}

pub(crate) struct VerifiedCache {
    table: SlotTable<Cached>,
    key: DigestKey,
    /// The key generation the entries belong to; a new one empties the cache.
    epoch: AtomicU64,
}

impl VerifiedCache {
    /// A cache of at most `max_entries` (rounded up to a multiple of 64); `None` when the system
    /// offers no randomness for the digest key.
    pub(crate) fn new(max_entries: usize) -> Option<Self> {
        Some(Self {
            table: SlotTable::new(max_entries, usize::MAX),
            key: DigestKey::random().ok()?,
            epoch: AtomicU64::new(0),
        })
    }

    /// The verified token, if it is cached, unexpired, and was verified by this key generation.
    pub(crate) fn get(&self, token: &[u8], epoch: u64, now_us: u64) -> Option<Arc<Verified>> {
        if self.epoch.load(Ordering::Acquire) != epoch
            && self.epoch.swap(epoch, Ordering::AcqRel) != epoch
        {
            // The keys changed: what older keys verified goes, rather than waiting for `exp`.
            self.table.clear();
        }
        let digest = TokenDigest::of(&self.key, token);
        self.table.with(digest.as_str(), BUCKET, now_us, |slot| {
            Visit::Done(
                slot.filter(|c| c.epoch == epoch && now_us < c.expires_us)
                    .map(|c| c.verified.clone()),
            )
        })
    }

    /// Remembers a verified token until its `exp`; a token without one is not cached.
    pub(crate) fn put(&self, token: &[u8], epoch: u64, verified: &Arc<Verified>, now_us: u64) {
        let Some(expires_us) = verified.expires_us.filter(|&e| e > now_us) else {
            return;
        };
        let digest = TokenDigest::of(&self.key, token);
        self.table.with(digest.as_str(), BUCKET, now_us, |_| {
            Visit::Store(
                (),
                Cached {
                    verified: verified.clone(),
                    expires_us,
                    epoch,
                },
            )
        });
    }

    pub(crate) fn forget(&self, token: &[u8]) {
        self.table
            .remove(TokenDigest::of(&self.key, token).as_str(), BUCKET);
    }

    pub(crate) fn len(&self) -> usize {
        self.table.len()
    }
}
