//! A bounded cache of verified tokens, so a repeated token skips its signature check.
//!
//! Keyed by the SHA-256 of the token (the cache never holds a bearer token itself), each entry
//! lives until the token's `exp` at most, and belongs to one generation of the keys: a key
//! rotation empties it of what older keys verified. Revocation is checked on every request,
//! cached or not, and a revoked token is dropped from the cache when it is seen.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};

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

/// The hex SHA-256 of a token, on the stack.
struct TokenDigest([u8; 64]);

impl TokenDigest {
    fn of(token: &str) -> Self {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let digest = Sha256::digest(token.as_bytes());
        let mut out = [0u8; 64];
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

pub(crate) struct VerifiedCache {
    table: SlotTable<Cached>,
    /// The key generation the entries belong to; a new one empties the cache.
    epoch: AtomicU64,
}

impl VerifiedCache {
    pub(crate) fn new(max_entries: usize) -> Self {
        Self {
            table: SlotTable::new(max_entries),
            epoch: AtomicU64::new(0),
        }
    }

    /// The verified token, if it is cached, unexpired, and was verified by this key generation.
    pub(crate) fn get(&self, token: &str, epoch: u64, now_us: u64) -> Option<Arc<Verified>> {
        if self.epoch.load(Ordering::Acquire) != epoch
            && self.epoch.swap(epoch, Ordering::AcqRel) != epoch
        {
            // The keys changed: what older keys verified goes, rather than waiting for `exp`.
            self.table.clear();
        }
        let digest = TokenDigest::of(token);
        self.table.with(digest.as_str(), BUCKET, now_us, |slot| {
            Visit::Done(
                slot.filter(|c| c.epoch == epoch && now_us < c.expires_us)
                    .map(|c| c.verified.clone()),
            )
        })
    }

    /// Remembers a verified token until its `exp`; a token without one is not cached.
    pub(crate) fn put(&self, token: &str, epoch: u64, verified: &Arc<Verified>, now_us: u64) {
        let Some(expires_us) = verified.expires_us.filter(|&e| e > now_us) else {
            return;
        };
        let digest = TokenDigest::of(token);
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

    pub(crate) fn forget(&self, token: &str) {
        self.table.remove(TokenDigest::of(token).as_str(), BUCKET);
    }

    pub(crate) fn len(&self) -> usize {
        self.table.len()
    }
}
