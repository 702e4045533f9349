//! [`ValidatorStore`] on the [`MemoryBackend`].

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use super::store::{Locked, Snapshot, StoredValidators, Update, ValidatorStore};
use crate::backend::MemoryBackend;
use crate::backend::lock_end::LockWaiters;
use crate::backend::memory::{PINNED, Slot, SlotTable, Visit, allocated};
use crate::clock::SharedClock;
use crate::error::StoreError;
use crate::owner::OwnerToken;

#[derive(Default)]
struct Entry {
    validators: Option<StoredValidators>,
    generation: u64,
    /// Microseconds.
    known_until: u64,
    lock: Option<(OwnerToken, u64)>,
    /// The requests waiting for the lock to end.
    waiters: LockWaiters,
}

struct EntrySlot(Mutex<Entry>);

impl EntrySlot {
    fn lock(&self) -> std::sync::MutexGuard<'_, Entry> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Slot for EntrySlot {
    fn is_idle(&self, now: u64) -> bool {
        self.debt(now) == 0
    }

    fn debt(&self, now: u64) -> u64 {
        let entry = self.lock();
        match entry.lock {
            // A held lock is never evicted: a second update would pass its precondition.
            Some((_, until)) if until > now => PINNED,
            _ => entry.known_until.saturating_sub(now),
        }
    }

    fn heap_bytes(&self) -> usize {
        let entry = self.lock();
        let tag = entry
            .validators
            .as_ref()
            .and_then(|v| v.etag.as_ref())
            .map_or(0, |etag| allocated(etag.tag().len()));
        let owner = entry
            .lock
            .as_ref()
            .map_or(0, |(owner, _)| allocated(owner.as_str().len()));
        tag + owner + entry.waiters.heap_bytes()
    }
}

/// Resources' validators and write locks in this process. Clones share every entry.
#[derive(Clone)]
pub struct MemoryValidatorStore {
    table: Arc<SlotTable<EntrySlot>>,
    clock: SharedClock,
}

impl std::fmt::Debug for MemoryValidatorStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryValidatorStore")
            .field("resources", &self.table.len())
            .finish_non_exhaustive()
    }
}

impl MemoryValidatorStore {
    /// A store with the backend's capacity and clock.
    #[must_use]
    pub fn new(backend: &MemoryBackend) -> Self {
        Self {
            table: Arc::new(SlotTable::for_backend(backend)),
            clock: backend.clock().clone(),
        }
    }

    /// Runs `f` on the resource's entry to change it, creating it when `create`.
    fn visit<R>(
        &self,
        resource: &str,
        create: bool,
        f: impl Fn(&mut Entry, u64) -> R,
    ) -> Option<R> {
        let now = self.clock.now_micros();
        self.table.with(resource, "", now, |slot| match slot {
            // A new tag or lock owner grows the entry: it is counted again.
            Some(slot) => Visit::Reweigh(Some(f(&mut slot.lock(), now))),
            None if create => {
                let mut entry = Entry::default();
                let r = f(&mut entry, now);
                Visit::Store(Some(r), EntrySlot(Mutex::new(entry)))
            }
            None => Visit::Done(None),
        })
    }

    fn snapshot(&self, resource: &str) -> Snapshot {
        let now = self.clock.now_micros();
        self.table
            .with(resource, "", now, |slot| {
                Visit::Done(slot.map(|slot| {
                    let entry = slot.lock();
                    Snapshot {
                        validators: known(&entry, now),
                        generation: entry.generation,
                    }
                }))
            })
            .unwrap_or_default()
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

fn known(entry: &Entry, now: u64) -> Option<StoredValidators> {
    (entry.known_until > now)
        .then(|| entry.validators.clone())
        .flatten()
}

impl ValidatorStore for MemoryValidatorStore {
    async fn get(&self, resource: &str) -> Result<Snapshot, StoreError> {
        Ok(self.snapshot(resource))
    }

    fn get_immediately(&self, resource: &str) -> Option<Result<Snapshot, StoreError>> {
        Some(Ok(self.snapshot(resource)))
    }

    async fn learn(
        &self,
        resource: &str,
        validators: &StoredValidators,
        seen: u64,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let learned = self.visit(resource, true, |entry, now| {
            if entry.generation != seen
                || entry.lock.as_ref().is_some_and(|(_, until)| *until > now)
            {
                return false;
            }
            entry.validators = Some(validators.clone());
            entry.known_until = now.saturating_add(micros(ttl));
            true
        });
        Ok(learned.unwrap_or(false))
    }

    async fn lock(
        &self,
        resource: &str,
        owner: &OwnerToken,
        lease: Duration,
    ) -> Result<Locked, StoreError> {
        let locked = self.visit(resource, true, |entry, now| match &entry.lock {
            Some((_, until)) if *until > now => Locked::Busy {
                lease_left: Duration::from_micros(until - now),
                current: known(entry, now),
            },
            _ => {
                entry.lock = Some((owner.clone(), now.saturating_add(micros(lease))));
                Locked::Held {
                    current: known(entry, now),
                }
            }
        });
        locked.ok_or(StoreError::Unavailable("validator entry vanished"))
    }

    async fn unlock(
        &self,
        resource: &str,
        owner: &OwnerToken,
        update: &Update,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let done = self.visit(resource, false, |entry, now| {
            if entry.lock.as_ref().is_none_or(|(o, _)| o != owner) {
                return false;
            }
            entry.lock = None;
            entry.waiters.wake();
            match update {
                Update::Keep => {}
                Update::Set(validators) => {
                    entry.validators = Some(validators.clone());
                    entry.known_until = now.saturating_add(micros(ttl));
                    entry.generation += 1;
                }
                Update::Forget => {
                    entry.validators = None;
                    // The generation stays as long as validators would, so a read that began
                    // before this update cannot bring the old ones back.
                    entry.known_until = now.saturating_add(micros(ttl));
                    entry.generation += 1;
                }
            }
            true
        });
        Ok(done.unwrap_or(false))
    }

    async fn until_unlocked(&self, resource: &str, patience: Duration) {
        let unlocked = self.visit(resource, false, |entry, now| {
            let held = entry.lock.as_ref().is_some_and(|(_, until)| *until > now);
            held.then(|| entry.waiters.listen())
        });
        if let Some(unlocked) = unlocked.flatten() {
            unlocked.within(patience).await;
        }
    }

    fn backend_name(&self) -> &'static str {
        "memory"
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::clock::ManualClock;

    fn store(clock: &ManualClock) -> MemoryValidatorStore {
        let backend = MemoryBackend::builder().clock(clock.clone()).build();
        MemoryValidatorStore::new(&backend.unwrap())
    }

    #[tokio::test]
    async fn a_waiter_wakes_when_the_lock_ends_and_not_before() {
        let clock = ManualClock::at_secs(1_800_000_000);
        let store = store(&clock);
        let (holder, lease) = (OwnerToken::new(), Duration::from_secs(30));
        let locked = store.lock("/items/a", &holder, lease).await.unwrap();
        assert!(matches!(locked, Locked::Held { .. }));
        let began = Instant::now();
        let waiting = tokio::spawn({
            let store = store.clone();
            async move {
                store
                    .until_unlocked("/items/a", Duration::from_secs(10))
                    .await
            }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "woken while the lock is held");
        let unlocked = store
            .unlock("/items/a", &holder, &Update::Keep, lease)
            .await;
        assert_eq!(unlocked.ok(), Some(true));
        waiting.await.unwrap();
        assert!(
            began.elapsed() < Duration::from_secs(5),
            "woken by the unlock, not by its patience"
        );
    }

    #[tokio::test]
    async fn nothing_to_wait_for_returns_at_once_and_a_silent_lease_is_waited_out() {
        let clock = ManualClock::at_secs(1_800_000_000);
        let store = store(&clock);
        let began = Instant::now();
        store
            .until_unlocked("/items/none", Duration::from_secs(10))
            .await;
        let lease = Duration::from_secs(30);
        store
            .lock("/items/a", &OwnerToken::new(), lease)
            .await
            .unwrap();
        clock.advance(lease);
        // The lease ended with nobody to announce it: the entry shows it has.
        store
            .until_unlocked("/items/a", Duration::from_secs(10))
            .await;
        assert!(began.elapsed() < Duration::from_secs(5));
        store
            .lock("/items/a", &OwnerToken::new(), lease)
            .await
            .unwrap();
        // A holder that never unlocks: the wait ends with its patience.
        let began = Instant::now();
        store
            .until_unlocked("/items/a", Duration::from_millis(30))
            .await;
        assert!(began.elapsed() >= Duration::from_millis(30));
    }
}
