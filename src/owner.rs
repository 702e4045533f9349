//! [`OwnerToken`]: who holds a lock (an idempotency key's, a resource's write lock).

use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// A per-process random seed: tokens of two processes never collide.
static SEED: LazyLock<u64> = LazyLock::new(|| {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.finish()
});

/// 32 lowercase hex digits no other call, in this process or another, returns: a random
/// per-process seed and a counter. Written by hand: the formatting machinery costs more than the
/// rest of a token.
pub(crate) fn unique_hex() -> [u8; 32] {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut text = [0u8; 32];
    for (i, word) in [*SEED, n].into_iter().enumerate() {
        for (j, digit) in text[i * 16..(i + 1) * 16].iter_mut().enumerate() {
            let nibble = (word >> (60 - 4 * j)) & 0xf;
            *digit = b"0123456789abcdef"[nibble as usize];
        }
    }
    text
}

/// Identifies the request holding a lock, so only it can complete or release it.
#[derive(Clone, PartialEq, Eq)]
pub struct OwnerToken(Box<str>);

impl OwnerToken {
    /// A token no other attempt, in this process or another, holds: a random per-process seed
    /// and a counter. It need not be secret, only unique: it is never shown to clients.
    #[must_use]
    pub fn new() -> Self {
        let text = unique_hex();
        Self(std::str::from_utf8(&text).unwrap_or_default().into())
    }

    /// The token as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for OwnerToken {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for OwnerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OwnerToken({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_the_seed_and_a_count_in_hex() {
        let (a, b) = (OwnerToken::new(), OwnerToken::new());
        for token in [&a, &b] {
            assert_eq!(token.as_str().len(), 32);
            assert!(
                token
                    .as_str()
                    .bytes()
                    .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
            );
        }
        // One process, one seed; the count goes up.
        assert_eq!(a.as_str()[..16], b.as_str()[..16]);
        let count = |t: &OwnerToken| u64::from_str_radix(&t.as_str()[16..], 16).unwrap();
        assert!(count(&b) > count(&a));
        assert_eq!(a.as_str()[..16], format!("{:016x}", *SEED));
    }
}
