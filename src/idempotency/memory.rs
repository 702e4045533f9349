//! [`IdempotencyStore`] on the [`MemoryBackend`].

use std::sync::{Arc, Mutex, PoisonError};

use http::{HeaderName, HeaderValue};

use super::fingerprint::Fingerprint;
use super::record::Outcome;
use super::store::{Begin, IdempotencyStore, RecordKey, Terms};
use crate::backend::MemoryBackend;
use crate::backend::lock_end::LockWaiters;
use crate::backend::memory::{PINNED, Slot, SlotTable, Visit, allocated};
use crate::clock::SharedClock;
use crate::error::StoreError;
use crate::owner::OwnerToken;

enum Record {
    InFlight {
        owner: OwnerToken,
        fingerprint: Fingerprint,
        /// Microseconds; a released lock has its lease ended (0) but keeps its attempt count.
        lease_until: u64,
        attempt: u32,
    },
    Finished {
        fingerprint: Fingerprint,
        completed_at: u64,
        expires_at: u64,
        outcome: Arc<Outcome>,
    },
}

/// A record, and the requests waiting for its in-flight lock to end.
struct Kept {
    record: Record,
    waiters: LockWaiters,
}

struct RecordSlot(Mutex<Kept>);

impl RecordSlot {
    fn new(record: Record) -> Self {
        Self(Mutex::new(Kept {
            record,
            waiters: LockWaiters::default(),
        }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Kept> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Slot for RecordSlot {
    fn is_idle(&self, now: u64) -> bool {
        self.debt(now) == 0
    }

    fn debt(&self, now: u64) -> u64 {
        match &self.lock().record {
            // A live lock is never evicted: its retry would run the handler a second time.
            Record::InFlight { lease_until, .. } if *lease_until > now => PINNED,
            Record::InFlight { .. } => 0,
            Record::Finished { expires_at, .. } => expires_at.saturating_sub(now),
        }
    }

    fn heap_bytes(&self) -> usize {
        let kept = self.lock();
        let record = match &kept.record {
            Record::InFlight { owner, .. } => allocated(owner.as_str().len()),
            Record::Finished { outcome, .. } => outcome_bytes(outcome),
        };
        record + kept.waiters.heap_bytes()
    }
}

/// What a kept outcome holds on the heap: its allocation (with the `Arc`'s two counts), and a
/// response's body and headers.
fn outcome_bytes(outcome: &Outcome) -> usize {
    let kept = match outcome {
        Outcome::Response(response) => {
            let headers: usize = response
                .headers
                .iter()
                .map(|(name, value)| {
                    size_of::<(HeaderName, HeaderValue)>()
                        + allocated(name.as_str().len())
                        + allocated(value.len())
                })
                .sum();
            allocated(response.body.len()) + headers
        }
        Outcome::NotKept { .. } => 0,
    };
    allocated(size_of::<Outcome>() + 2 * size_of::<usize>()) + kept
}

/// Idempotency records in this process. Clones share every record.
///
/// Bounded by the backend's `max_keys` and `max_bytes` (kept responses counted by their size):
/// when full, the finished records closest to the end of their retention go first; locks of
/// requests still running are never evicted. A replay forgotten that way lets a late retry run the
/// handler again, so size both above what the keyed requests of one retention period bring, or use
/// Redis.
#[derive(Clone)]
pub struct MemoryIdempotencyStore {
    table: Arc<SlotTable<RecordSlot>>,
    clock: SharedClock,
}

impl std::fmt::Debug for MemoryIdempotencyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryIdempotencyStore")
            .field("records", &self.table.len())
            .finish_non_exhaustive()
    }
}

impl MemoryIdempotencyStore {
    /// A store with the backend's capacity and clock.
    #[must_use]
    pub fn new(backend: &MemoryBackend) -> Self {
        Self {
            table: Arc::new(SlotTable::for_backend(backend)),
            clock: backend.clock().clone(),
        }
    }

    /// Records held now (in flight, finished, or ended but not yet swept).
    #[must_use]
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Whether no record is held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes held now, kept responses included, as counted against the backend's
    /// [`max_bytes`](crate::backend::MemoryBackend::max_bytes).
    #[must_use]
    pub fn bytes(&self) -> usize {
        self.table.bytes()
    }

    fn begin_now(&self, key: RecordKey<'_>, fingerprint: &Fingerprint, terms: &Terms) -> Begin {
        let now = self.clock.now_micros();
        let lease_until = now.saturating_add(micros(terms.lease));
        let retention = micros(terms.retention);
        let owner = OwnerToken::new();
        let start = |attempt| {
            (
                Begin::Started {
                    owner: owner.clone(),
                    attempt,
                },
                Record::InFlight {
                    owner: owner.clone(),
                    fingerprint: *fingerprint,
                    lease_until,
                    attempt,
                },
            )
        };
        self.table.with(key.scope, key.key, now, |slot| {
            let Some(slot) = slot else {
                let (begin, record) = start(1);
                return Visit::Store(begin, RecordSlot::new(record));
            };
            let mut kept = slot.lock();
            let attempt = match &kept.record {
                Record::Finished {
                    fingerprint: f,
                    completed_at,
                    outcome,
                    ..
                } if now.saturating_sub(*completed_at) < retention => {
                    return Visit::Done(if f == fingerprint {
                        Begin::Finished(Outcome::clone(outcome))
                    } else {
                        Begin::Mismatch
                    });
                }
                Record::Finished { .. } => 1,
                Record::InFlight {
                    fingerprint: f,
                    lease_until: until,
                    ..
                } if now < *until => {
                    return Visit::Done(if f == fingerprint {
                        Begin::InFlight {
                            lease_left: std::time::Duration::from_micros(until - now),
                        }
                    } else {
                        Begin::Mismatch
                    });
                }
                Record::InFlight { attempt, .. } => attempt.saturating_add(1),
            };
            let (begin, fresh) = start(attempt);
            kept.record = fresh;
            // An expired response gave way to a lock: its bytes are no longer held.
            Visit::Reweigh(begin)
        })
    }

    /// Runs `f` on the record if `owner` holds its lock.
    fn with_owned(
        &self,
        key: RecordKey<'_>,
        owner: &OwnerToken,
        f: impl Fn(&mut Record, u64),
    ) -> bool {
        let now = self.clock.now_micros();
        self.table.with(key.scope, key.key, now, |slot| {
            let Some(slot) = slot else {
                return Visit::Done(false);
            };
            let mut kept = slot.lock();
            match &kept.record {
                Record::InFlight { owner: o, .. } if o == owner => {
                    f(&mut kept.record, now);
                    // Completed or released: the lock ended either way.
                    kept.waiters.wake();
                    // A completion grows the record by its outcome.
                    Visit::Reweigh(true)
                }
                _ => Visit::Done(false),
            }
        })
    }
}

fn micros(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl IdempotencyStore for MemoryIdempotencyStore {
    async fn begin(
        &self,
        key: RecordKey<'_>,
        fingerprint: &Fingerprint,
        terms: &Terms,
    ) -> Result<Begin, StoreError> {
        Ok(self.begin_now(key, fingerprint, terms))
    }

    async fn complete(
        &self,
        key: RecordKey<'_>,
        owner: &OwnerToken,
        outcome: &Outcome,
        terms: &Terms,
    ) -> Result<bool, StoreError> {
        let outcome = Arc::new(outcome.clone());
        Ok(self.with_owned(key, owner, |record, now| {
            if let Record::InFlight { fingerprint, .. } = record {
                *record = Record::Finished {
                    fingerprint: *fingerprint,
                    completed_at: now,
                    expires_at: now.saturating_add(micros(terms.retention)),
                    outcome: outcome.clone(),
                };
            }
        }))
    }

    async fn release(
        &self,
        key: RecordKey<'_>,
        owner: &OwnerToken,
        _terms: &Terms,
    ) -> Result<bool, StoreError> {
        Ok(self.release_now(key, owner))
    }

    fn release_detached(&self, scope: String, key: String, owner: OwnerToken, _terms: Terms) {
        // Nothing to wait for in memory: release at once, so a retry right after the cancel
        // finds the key free.
        self.release_now(
            RecordKey {
                scope: &scope,
                key: &key,
            },
            &owner,
        );
    }

    async fn until_unlocked(&self, key: RecordKey<'_>, patience: std::time::Duration) {
        let now = self.clock.now_micros();
        let ended = self.table.with(key.scope, key.key, now, |slot| {
            let Some(slot) = slot else {
                return Visit::Done(None);
            };
            let mut kept = slot.lock();
            let running =
                matches!(kept.record, Record::InFlight { lease_until, .. } if lease_until > now);
            // Listening may make the waiters' part of the record: it is counted again.
            Visit::Reweigh(running.then(|| kept.waiters.listen()))
        });
        if let Some(ended) = ended {
            ended.within(patience).await;
        }
    }

    fn backend_name(&self) -> &'static str {
        "memory"
    }
}

impl MemoryIdempotencyStore {
    fn release_now(&self, key: RecordKey<'_>, owner: &OwnerToken) -> bool {
        self.with_owned(key, owner, |record, _| {
            if let Record::InFlight { lease_until, .. } = record {
                *lease_until = 0;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    #[tokio::test]
    async fn a_waiter_wakes_when_the_attempt_ends_and_not_before() {
        let store = MemoryIdempotencyStore::new(&MemoryBackend::new());
        let key = RecordKey {
            scope: "u:alice",
            key: "k-1",
        };
        let (fingerprint, terms) = (Fingerprint::of_bytes(b"POST /orders"), Terms::default());
        let Begin::Started { owner, .. } = store.begin_now(key, &fingerprint, &terms) else {
            panic!("the first attempt starts");
        };
        let began = Instant::now();
        let waiting = tokio::spawn({
            let store = store.clone();
            async move {
                let key = RecordKey {
                    scope: "u:alice",
                    key: "k-1",
                };
                store.until_unlocked(key, Duration::from_secs(10)).await;
            }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "woken while the attempt runs");
        assert!(store.release_now(key, &owner));
        waiting.await.unwrap();
        assert!(
            began.elapsed() < Duration::from_secs(5),
            "woken by the release, not by its patience"
        );
        // Nothing running: no wait at all.
        let began = Instant::now();
        store.until_unlocked(key, Duration::from_secs(10)).await;
        assert!(began.elapsed() < Duration::from_secs(5));
    }
}
