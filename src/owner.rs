//! [`OwnerToken`]: who holds a lock (an idempotency key's, a resource's write lock).

use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// Identifies the request holding a lock, so only it can complete or release it.
#[derive(Clone, PartialEq, Eq)]
pub struct OwnerToken(Box<str>);

impl OwnerToken {
    /// A token no other attempt, in this process or another, holds: a random per-process seed
    /// and a counter. It need not be secret, only unique: it is never shown to clients.
    #[must_use]
    pub fn new() -> Self {
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
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        Self(format!("{:016x}{n:016x}", *SEED).into())
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
