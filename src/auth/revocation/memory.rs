//! [`RevocationStore`] on the [`MemoryBackend`].

use std::sync::Arc;

use super::RevocationStore;
use crate::backend::MemoryBackend;
use crate::backend::memory::{Slot, SlotTable, Visit};
use crate::clock::SharedClock;
use crate::error::StoreError;

/// A revocation until this instant, in microseconds.
struct Until(u64);

impl Slot for Until {
    fn is_idle(&self, now_us: u64) -> bool {
        now_us >= self.0
    }

    fn debt(&self, now_us: u64) -> u64 {
        self.0.saturating_sub(now_us)
    }
}

const BUCKET: &str = "jti";

/// Revoked token ids in this process. Clones share the list.
///
/// Bounded by the backend's `max_keys` and `max_bytes` (each token id counted by its length):
/// when full, the revocations closest to expiring anyway are forgotten first. Size it above the
/// revocations you expect within one token lifetime.
///
/// ```
/// use api_policy::auth::{MemoryRevocationStore, RevocationStore};
/// use api_policy::backend::MemoryBackend;
/// # tokio_test_block_on(async {
/// let store = MemoryRevocationStore::new(&MemoryBackend::new());
/// store.revoke("jti-1", 4_102_444_800).await?;
/// assert!(store.is_revoked("jti-1").await?);
/// assert!(!store.is_revoked("jti-2").await?);
/// # Ok::<(), api_policy::StoreError>(()) }).unwrap();
/// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
/// # }
/// ```
#[derive(Clone)]
pub struct MemoryRevocationStore {
    table: Arc<SlotTable<Until>>,
    clock: SharedClock,
}

impl std::fmt::Debug for MemoryRevocationStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryRevocationStore")
            .field("revoked", &self.table.len())
            .finish()
    }
}

impl MemoryRevocationStore {
    /// A store on this backend (its size bound and clock).
    #[must_use]
    pub fn new(backend: &MemoryBackend) -> Self {
        Self {
            table: Arc::new(SlotTable::for_backend(backend)),
            clock: backend.clock().clone(),
        }
    }

    fn check(&self, jti: &str) -> bool {
        let now = self.clock.now_micros();
        self.table.with(jti, BUCKET, now, |slot| {
            Visit::Done(slot.is_some_and(|until| !until.is_idle(now)))
        })
    }
}

impl RevocationStore for MemoryRevocationStore {
    async fn revoke(&self, jti: &str, expires_at: u64) -> Result<(), StoreError> {
        let until = expires_at.saturating_mul(1_000_000);
        let now = self.clock.now_micros();
        if until > now {
            self.table
                .with(jti, BUCKET, now, |_| Visit::Store((), Until(until)));
        }
        Ok(())
    }

    async fn is_revoked(&self, jti: &str) -> Result<bool, StoreError> {
        Ok(self.check(jti))
    }

    fn is_revoked_now(&self, jti: &str) -> Option<Result<bool, StoreError>> {
        Some(Ok(self.check(jti)))
    }

    fn backend_name(&self) -> &'static str {
        "memory"
    }
}
