//! [`RevocationStore`] on the [`RedisBackend`]: one command per check.

use super::RevocationStore;
use crate::backend::RedisBackend;
use crate::error::StoreError;

/// Revoked token ids in Redis, shared by every instance of the app.
///
/// Keys: `{prefix}jti:<jti>`, expiring at the token's `exp` (`SET ... EXAT`), so the list holds
/// only tokens that would otherwise still be accepted.
#[derive(Debug, Clone)]
pub struct RedisRevocationStore {
    backend: RedisBackend,
}

impl RedisRevocationStore {
    /// A store on this backend.
    #[must_use]
    pub fn new(backend: &RedisBackend) -> Self {
        Self {
            backend: backend.clone(),
        }
    }

    fn key(&self, jti: &str) -> String {
        format!("{}jti:{jti}", self.backend.prefix())
    }
}

impl RevocationStore for RedisRevocationStore {
    async fn revoke(&self, jti: &str, expires_at: u64) -> Result<(), StoreError> {
        // Redis refuses `EXAT 0`; a time already past makes the key vanish at once, which is
        // right: an expired token needs no entry.
        if expires_at == 0 {
            return Ok(());
        }
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.key(jti)).arg(1).arg("EXAT").arg(expires_at);
        self.backend.query(&cmd).await
    }

    async fn is_revoked(&self, jti: &str) -> Result<bool, StoreError> {
        let mut cmd = redis::cmd("EXISTS");
        cmd.arg(self.key(jti));
        let count: u64 = self.backend.query(&cmd).await?;
        Ok(count > 0)
    }

    fn backend_name(&self) -> &'static str {
        "redis"
    }
}
