//! The guard of a resource's write lock, held by an update from its check to its new
//! validators.

use std::mem;
use std::time::Duration;

use super::store::{Update, ValidatorStore};
use crate::owner::OwnerToken;

/// The resource's write lock, ended when the request is dropped while holding it (the client
/// went away): the update may or may not have happened, so what was known is forgotten.
pub(super) struct LockGuard<St: ValidatorStore> {
    pub(super) store: St,
    pub(super) resource: String,
    pub(super) owner: Option<OwnerToken>,
    pub(super) ttl: Duration,
}

impl<St: ValidatorStore> LockGuard<St> {
    /// Another request holds the lock: nothing of ours to release.
    pub(super) fn disarm(&mut self) {
        self.owner = None;
    }

    pub(super) async fn unlock(&mut self, update: Update) {
        let Some(owner) = self.owner.clone() else {
            return;
        };
        match self
            .store
            .unlock(&self.resource, &owner, &update, self.ttl)
            .await
        {
            Ok(true) => {}
            Ok(false) => tracing::warn!(layer = "conditional", resource = %self.resource,
                "the write lock's lease ended before the update did; raise the lease"),
            Err(error) => {
                tracing::warn!(layer = "conditional", backend = self.store.backend_name(),
                %error, "could not end a write lock; its lease will")
            }
        }
        self.owner = None;
    }
}

impl<St: ValidatorStore> Drop for LockGuard<St> {
    fn drop(&mut self) {
        let Some(owner) = self.owner.take() else {
            return;
        };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let (store, resource, ttl) =
                (self.store.clone(), mem::take(&mut self.resource), self.ttl);
            runtime.spawn(async move {
                let _ = store.unlock(&resource, &owner, &Update::Forget, ttl).await;
            });
        }
    }
}
