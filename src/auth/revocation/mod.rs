//! Revoked tokens: a deny list of `jti` values, each kept until the token's own `exp`, for logout
//! and incident response. The layer checks it on every request, cached tokens included.

#[cfg(feature = "memory")]
mod memory;
#[cfg(feature = "redis")]
mod redis;

use std::future::Future;

#[cfg(feature = "memory")]
pub use memory::MemoryRevocationStore;
#[cfg(feature = "redis")]
pub use redis::RedisRevocationStore;

use crate::error::StoreError;
use crate::kit::BoxFuture;

/// Where revoked token ids live, one trait for every backend.
pub trait RevocationStore: Clone + Send + Sync + 'static {
    /// Revokes the token with this `jti` until `expires_at` (its `exp`, Unix seconds); after that
    /// the token is refused for having expired, so the entry can go.
    fn revoke(
        &self,
        jti: &str,
        expires_at: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Whether the token with this `jti` is revoked.
    fn is_revoked(&self, jti: &str) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// The answer without waiting, for stores that have it at hand (memory); `None` sends the
    /// layer through [`is_revoked`](Self::is_revoked).
    fn is_revoked_now(&self, jti: &str) -> Option<Result<bool, StoreError>> {
        let _ = jti;
        None
    }

    /// The backend's name, for traces.
    fn backend_name(&self) -> &'static str;
}

/// A [`RevocationStore`] behind a pointer, so the layer is not generic over its store.
pub(crate) trait DynRevocation: Send + Sync + 'static {
    fn is_revoked_now(&self, jti: &str) -> Option<Result<bool, StoreError>>;
    fn is_revoked(&self, jti: String) -> BoxFuture<Result<bool, StoreError>>;
    fn revoke(&self, jti: String, expires_at: u64) -> BoxFuture<Result<(), StoreError>>;
    fn backend_name(&self) -> &'static str;
}

impl<T: RevocationStore> DynRevocation for T {
    fn is_revoked_now(&self, jti: &str) -> Option<Result<bool, StoreError>> {
        RevocationStore::is_revoked_now(self, jti)
    }

    fn is_revoked(&self, jti: String) -> BoxFuture<Result<bool, StoreError>> {
        let store = self.clone();
        Box::pin(async move { RevocationStore::is_revoked(&store, &jti).await })
    }

    fn revoke(&self, jti: String, expires_at: u64) -> BoxFuture<Result<(), StoreError>> {
        let store = self.clone();
        Box::pin(async move { RevocationStore::revoke(&store, &jti, expires_at).await })
    }

    fn backend_name(&self) -> &'static str {
        RevocationStore::backend_name(self)
    }
}
