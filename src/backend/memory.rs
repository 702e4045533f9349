//! [`MemoryBackend`]: state in this process, bounded, with no connection to fail.
//!
//! # State layout
//! Policy state that is touched on every request (a rate-limit bucket) lives in a sharded hash
//! table of fixed-size slots, updated in place with atomics under a shard's read lock. A lookup is
//! one hash, one uncontended read lock and one probe: no allocation, no bookkeeping per read.
//! A general cache (moka) was measured first: its `get` records every read for its eviction policy,
//! which made a decision about 3.4x the cost of governor's keyed check at 10,000 keys, and
//! get-then-insert about 15x.
//!
//! Keys leave in two ways. A slot whose state is back to "as if never seen" (a full bucket) is
//! dropped by the sweep that runs as a shard grows, which is exact: dropping it changes no answer.
//! When a shard is at capacity with every slot still in use, the slots closest to "as if never
//! seen" go first (for rate limits, the callers who owe the least).
//!
//! # Caveat: eviction forgets
//! Evicting a slot that is still in use resets it: a rate-limited caller whose bucket is evicted
//! starts again with a full bucket. Size `max_keys` above the number of callers active within one
//! quota period; a spray of new keys evicts the slots owing least first, so it buys a sprayer little.

use std::hash::BuildHasher;
use std::sync::{Arc, PoisonError, RwLock};

use hashbrown::HashTable;

use crate::clock::{Clock, SharedClock, SystemClock};
use crate::error::ConfigError;

/// Process-local state for every layer; cheap to clone, clones share state settings.
///
/// ```
/// use api_policy::backend::MemoryBackend;
/// let backend = MemoryBackend::builder().max_keys(50_000).build().unwrap();
/// assert_eq!(backend.max_keys(), 50_000);
/// ```
#[derive(Debug, Clone)]
pub struct MemoryBackend {
    max_keys: usize,
    clock: SharedClock,
}

impl Default for MemoryBackend {
    fn default() -> Self {
        Self {
            max_keys: 100_000,
            clock: Arc::new(SystemClock),
        }
    }
}

impl MemoryBackend {
    /// A backend with the defaults: 100,000 keys per store, the system clock.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts a configured backend.
    pub fn builder() -> MemoryBackendBuilder {
        MemoryBackendBuilder {
            inner: Self::default(),
        }
    }

    /// The most keys each store of this backend holds.
    #[must_use]
    pub fn max_keys(&self) -> usize {
        self.max_keys
    }

    /// The clock stores read.
    #[must_use]
    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }
}

/// Builds a [`MemoryBackend`].
#[derive(Debug)]
#[must_use]
pub struct MemoryBackendBuilder {
    inner: MemoryBackend,
}

impl MemoryBackendBuilder {
    /// The most keys each store holds (default 100,000).
    pub fn max_keys(mut self, max_keys: usize) -> Self {
        self.inner.max_keys = max_keys;
        self
    }

    /// The clock stores read (default: the system clock); tests pass a
    /// [`ManualClock`](crate::clock::ManualClock).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.inner.clock = Arc::new(clock);
        self
    }

    /// The backend.
    ///
    /// # Errors
    /// A [`ConfigError`] when `max_keys` is zero.
    pub fn build(self) -> Result<MemoryBackend, ConfigError> {
        if self.inner.max_keys == 0 {
            return Err(ConfigError::new("memory.max_keys", "must be at least 1"));
        }
        Ok(self.inner)
    }
}

/// A slot's view of time: whether it can be forgotten without changing any answer, and otherwise
/// how much forgetting it would forgive.
pub(crate) trait Slot: Send + Sync + 'static {
    /// True when the slot holds nothing a fresh slot would not.
    fn is_idle(&self, now_us: u64) -> bool;
    /// How much evicting the slot now would forgive; the least go first. [`PINNED`] slots (a
    /// live lock) are never evicted, so a full shard of them grows past its capacity by their
    /// number rather than break a promise.
    fn debt(&self, now_us: u64) -> u64;
}

/// One slot and its key, written `caller 0xFF bucket` in one allocation (0xFF never occurs in
/// UTF-8, so the split is unambiguous), with its hash kept so a probe rarely reads the key and a
/// resize never rehashes it.
struct Entry<V> {
    key: Box<[u8]>,
    hash: u64,
    slot: V,
}

impl<V> Entry<V> {
    fn is(&self, hash: u64, caller: &str, bucket: &str) -> bool {
        let (c, b) = (caller.as_bytes(), bucket.as_bytes());
        self.hash == hash
            && self.key.len() == c.len() + 1 + b.len()
            && self.key[..c.len()] == *c
            && self.key[c.len() + 1..] == *b
    }
}

struct Shard<V> {
    table: HashTable<Entry<V>>,
    sweep_at: usize,
}

const SHARDS: usize = 64;
/// Bits 51..57 of the hash choose the shard: hashbrown uses the top seven for its tags and the
/// low bits for the bucket, so these leave both evenly spread within a shard.
const SHARD_SHIFT: u32 = 51;
const MIN_SWEEP: usize = 64;
/// The debt of a slot that must not be evicted while it is in use.
pub(crate) const PINNED: u64 = u64::MAX;

/// What a visit to a slot decided: done (the slot was updated in place, or is to stay as it is),
/// or a new slot to store.
pub(crate) enum Visit<R, V> {
    Done(R),
    Store(R, V),
}

/// A bounded, sharded table of slots keyed by (caller, bucket).
pub(crate) struct SlotTable<V> {
    shards: Box<[RwLock<Shard<V>>]>,
    hasher: foldhash::fast::RandomState,
    shard_capacity: usize,
}

impl<V: Slot> SlotTable<V> {
    pub(crate) fn new(max_keys: usize) -> Self {
        let shard_capacity = max_keys.div_ceil(SHARDS).max(1);
        let shards = (0..SHARDS)
            .map(|_| {
                RwLock::new(Shard {
                    table: HashTable::new(),
                    // A small table must sweep before its first MIN_SWEEP entries, or the bound
                    // would not hold until then.
                    sweep_at: MIN_SWEEP.min(shard_capacity),
                })
            })
            .collect();
        Self {
            shards,
            hasher: foldhash::fast::RandomState::default(),
            shard_capacity,
        }
    }

    fn locate(&self, caller: &str, bucket: &str) -> (u64, &RwLock<Shard<V>>) {
        let hash = self.hasher.hash_one((caller, bucket));
        (hash, &self.shards[(hash >> SHARD_SHIFT) as usize % SHARDS])
    }

    /// Runs `f` on the slot for the key (`None` when there is none). When `f` answers
    /// [`Visit::Store`], the slot is replaced (or created) under the shard's write lock, and `f` runs
    /// once more there first, so a slot changed in between is seen.
    pub(crate) fn with<R>(
        &self,
        caller: &str,
        bucket: &str,
        now_us: u64,
        f: impl Fn(Option<&V>) -> Visit<R, V>,
    ) -> R {
        let (hash, shard) = self.locate(caller, bucket);
        let eq = |e: &Entry<V>| e.is(hash, caller, bucket);
        {
            let read = shard.read().unwrap_or_else(PoisonError::into_inner);
            if let Visit::Done(r) = f(read.table.find(hash, eq).map(|e| &e.slot)) {
                return r;
            }
        }
        let mut write = shard.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = write.table.find_mut(hash, eq) {
            return match f(Some(&entry.slot)) {
                Visit::Done(r) => r,
                Visit::Store(r, slot) => {
                    entry.slot = slot;
                    r
                }
            };
        }
        let (r, slot) = match f(None) {
            Visit::Done(r) => return r,
            Visit::Store(r, slot) => (r, slot),
        };
        if write.table.len() >= write.sweep_at {
            self.sweep(&mut write, now_us);
        }
        let mut key = Vec::with_capacity(caller.len() + 1 + bucket.len());
        key.extend_from_slice(caller.as_bytes());
        key.push(0xFF);
        key.extend_from_slice(bucket.as_bytes());
        let entry = Entry {
            key: key.into_boxed_slice(),
            hash,
            slot,
        };
        write.table.insert_unique(hash, entry, |e| e.hash);
        r
    }

    /// Drops idle slots; if the shard is still full, evicts the slots owing least down to 7/8 of
    /// capacity, so a shard under pressure sweeps once per capacity/8 insertions, not every time.
    fn sweep(&self, shard: &mut Shard<V>, now_us: u64) {
        shard.table.retain(|e| !e.slot.is_idle(now_us));
        let len = shard.table.len();
        if len >= self.shard_capacity {
            let keep = self.shard_capacity - self.shard_capacity / 8 - 1;
            let mut debts: Vec<u64> = shard.table.iter().map(|e| e.slot.debt(now_us)).collect();
            let cut = len - keep;
            let (_, threshold, _) = debts.select_nth_unstable(cut - 1);
            let threshold = *threshold;
            let mut evict = cut;
            shard.table.retain(|e| {
                let debt = e.slot.debt(now_us);
                if evict > 0 && debt <= threshold && debt != PINNED {
                    evict -= 1;
                    false
                } else {
                    true
                }
            });
        }
        shard.sweep_at =
            (shard.table.len() * 2).clamp(MIN_SWEEP.min(self.shard_capacity), self.shard_capacity);
    }

    /// Forgets the slot for the key, if there is one.
    #[cfg_attr(not(feature = "jwt"), allow(dead_code))]
    pub(crate) fn remove(&self, caller: &str, bucket: &str) {
        let (hash, shard) = self.locate(caller, bucket);
        let mut write = shard.write().unwrap_or_else(PoisonError::into_inner);
        if let Ok(entry) = write.table.find_entry(hash, |e| e.is(hash, caller, bucket)) {
            entry.remove();
        }
    }

    /// Drops every slot.
    #[cfg_attr(not(feature = "jwt"), allow(dead_code))]
    pub(crate) fn clear(&self) {
        for shard in &*self.shards {
            shard
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .table
                .clear();
        }
    }

    /// Keys held now, across shards.
    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.read().unwrap_or_else(PoisonError::into_inner).table.len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// A slot that is idle after `until`, owing `until - now`.
    struct Until(AtomicU64);

    impl Slot for Until {
        fn is_idle(&self, now: u64) -> bool {
            self.0.load(Ordering::Relaxed) <= now
        }
        fn debt(&self, now: u64) -> u64 {
            self.0.load(Ordering::Relaxed).saturating_sub(now)
        }
    }

    /// Reads the slot for `key` (creating it owing until `until`) as seen at `now`.
    fn touch(table: &SlotTable<Until>, key: &str, now: u64, until: u64) -> u64 {
        table.with(key, "b", now, |slot| match slot {
            Some(s) => Visit::Done(s.0.load(Ordering::Relaxed)),
            None => Visit::Store(until, Until(AtomicU64::new(until))),
        })
    }

    #[test]
    fn idle_slots_are_swept_and_busy_ones_kept() {
        let table = SlotTable::new(64 * 1000);
        touch(&table, "busy", 0, u64::MAX);
        for i in 0..20_000 {
            touch(&table, &format!("idle{i}"), 10, 5);
        }
        assert!(
            table.len() < 20_000,
            "idle slots were not swept: {}",
            table.len()
        );
        assert_eq!(touch(&table, "busy", 10, 0), u64::MAX);
    }

    #[test]
    fn a_small_table_holds_its_bound_from_the_first_insertion() {
        let table = SlotTable::new(64);
        for i in 0..1_000u64 {
            touch(&table, &format!("k{i}"), 0, 1 + i);
            assert!(table.len() <= 64, "{}", table.len());
        }
    }

    #[test]
    fn capacity_is_never_exceeded_and_the_deepest_debts_survive() {
        let table = SlotTable::new(64 * 100);
        touch(&table, "debtor", 0, 1_000_000);
        for i in 0..100_000u64 {
            touch(&table, &format!("k{i}"), 0, 1 + i % 10);
            assert!(table.len() <= 64 * 100);
        }
        assert_eq!(
            touch(&table, "debtor", 0, 0),
            1_000_000,
            "the slot owing most was evicted"
        );
    }

    #[test]
    fn visits_replace_slots_or_leave_them() {
        let table = SlotTable::new(1000);
        touch(&table, "k", 0, 7);
        let replaced = table.with("k", "b", 0, |slot| match slot {
            Some(s) if s.0.load(Ordering::Relaxed) == 9 => Visit::Done(9),
            _ => Visit::Store(9, Until(AtomicU64::new(9))),
        });
        assert_eq!((replaced, touch(&table, "k", 0, 0), table.len()), (9, 9, 1));
        // A visit that stores nothing creates nothing.
        let absent: Option<u64> = table.with("new", "b", 0, |slot| {
            Visit::Done(slot.map(|s| s.0.load(Ordering::Relaxed)))
        });
        assert_eq!((absent, table.len()), (None, 1));
    }
}
