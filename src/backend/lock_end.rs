//! [`LockWaiters`]: the requests waiting for a memory store's lock to end, woken when it does.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::sync::futures::OwnedNotified;

use super::memory::allocated;

/// The requests waiting for a slot's lock (a resource's write lock, an idempotency key's
/// in-flight record) to end. Kept in the slot beside the lock and used under the same mutex, so
/// an ending cannot come between a request's look at the lock and its listening.
#[derive(Default)]
pub(crate) struct LockWaiters(Option<Arc<Notify>>);

impl LockWaiters {
    /// Listens, from now, for the lock to end.
    pub(crate) fn listen(&mut self) -> LockEnd {
        let notify = self.0.get_or_insert_with(Default::default).clone();
        let mut ended = Box::pin(notify.notified_owned());
        ended.as_mut().enable();
        LockEnd(ended)
    }

    /// Wakes every request listening: the lock ended. One of them takes the lock and the others
    /// listen again, which is fine for the few requests a lock keeps waiting at once.
    pub(crate) fn wake(&mut self) {
        if let Some(notify) = self.0.take() {
            notify.notify_waiters();
        }
    }

    /// What the waiters hold on the heap, for the store's byte count.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.0.as_ref().map_or(0, |_| {
            allocated(size_of::<Notify>() + 2 * size_of::<usize>())
        })
    }
}

/// A lock's end, listened for.
pub(crate) struct LockEnd(Pin<Box<OwnedNotified>>);

impl LockEnd {
    /// Waits for the lock to end, at most `patience`: a lock whose holder is gone ends by its
    /// lease, which nothing announces.
    pub(crate) async fn within(self, patience: Duration) {
        let _ = tokio::time::timeout(patience, self.0).await;
    }
}
