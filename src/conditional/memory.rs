//! [`ValidatorStore`] on the [`MemoryBackend`].

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use super::store::{Locked, Snapshot, StoredValidators, Update, ValidatorStore};
use crate::backend::MemoryBackend;
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
        tag + owner
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

    fn backend_name(&self) -> &'static str {
        "memory"
    }
}
