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
//! When a store is at capacity with every slot still in use, the slots closest to "as if never
//! seen" go first (for rate limits, the callers who owe the least).
//!
//! # Capacity: keys and bytes
//! Each store has two bounds, and whichever is reached first evicts:
//! - `max_keys`, per store, enforced per shard (a 64th each);
//! - `max_bytes`, per store as a whole: the bytes the store's tables allocate, plus each key and
//!   what each slot owns outside the table (a stored response's body and headers), counted as it
//!   is stored. Each allocation counts as the allocator's chunk for it, header and rounding included.
//!
//! Bytes are counted, not estimated from a key count, so a spray of long keys or large responses
//! meets the same bound as a spray of short ones. What the count leaves out is fixed or small: the
//! store's own struct, and the allocator's free lists, which hold memory a process already had.
//!
//! # Caveat: eviction forgets
//! Evicting a slot that is still in use resets it: a rate-limited caller whose bucket is evicted
//! starts again with a full bucket. Size the bounds above the callers active within one quota
//! period; a spray of new keys evicts the slots owing least first, so it buys a sprayer little:
//! a caller who owes a whole quota outlasts a million new keys that each owe one request.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use hashbrown::HashTable;

use crate::clock::{Clock, SharedClock, SystemClock};
use crate::error::ConfigError;

/// Process-local state for every layer; cheap to clone, clones share state settings.
///
/// ```
/// use api_policy::backend::MemoryBackend;
/// let backend = MemoryBackend::builder()
///     .max_keys(50_000)
///     .max_bytes(16 << 20)
///     .build()
///     .unwrap();
/// assert_eq!((backend.max_keys(), backend.max_bytes()), (50_000, 16 << 20));
/// ```
#[derive(Debug, Clone)]
pub struct MemoryBackend {
    max_keys: usize,
    max_bytes: usize,
    clock: SharedClock,
}

/// The least `max_bytes`: a kilobyte for each of a store's 64 shards.
pub const MIN_BYTES: usize = 64 * 1024;

impl Default for MemoryBackend {
    fn default() -> Self {
        Self {
            max_keys: 100_000,
            max_bytes: 64 << 20,
            clock: Arc::new(SystemClock),
        }
    }
}

impl MemoryBackend {
    /// A backend with the defaults: 100,000 keys and 64 MiB per store, the system clock.
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

    /// The most bytes each store of this backend holds (see the [module docs](self)).
    #[must_use]
    pub fn max_bytes(&self) -> usize {
        self.max_bytes
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

    /// The most bytes each store holds (default 64 MiB, at least [`MIN_BYTES`]): its tables,
    /// keys, and what its slots own, such as the responses kept for idempotent replays.
    pub fn max_bytes(mut self, max_bytes: usize) -> Self {
        self.inner.max_bytes = max_bytes;
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
    /// A [`ConfigError`] when `max_keys` is zero or `max_bytes` under [`MIN_BYTES`].
    pub fn build(self) -> Result<MemoryBackend, ConfigError> {
        if self.inner.max_keys == 0 {
            return Err(ConfigError::new("memory.max_keys", "must be at least 1"));
        }
        if self.inner.max_bytes < MIN_BYTES {
            return Err(ConfigError::new(
                "memory.max_bytes",
                format!("must be at least {MIN_BYTES}"),
            ));
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
    /// Bytes the slot owns outside the table, counted against `max_bytes` when it is stored. A
    /// visit that makes a slot grow in place answers [`Visit::Reweigh`], so it is counted again.
    fn heap_bytes(&self) -> usize {
        0
    }
}

/// The bytes an allocation of `bytes` takes from the allocator: glibc's chunk, 8 bytes of header
/// rounded up to 16, and at least 32 (other allocators round alike). Nothing for nothing.
pub(crate) const fn allocated(bytes: usize) -> usize {
    if bytes == 0 {
        return 0;
    }
    let chunk = (bytes + 8).next_multiple_of(16);
    if chunk < 32 { 32 } else { chunk }
}

/// One slot and its key, written `caller 0xFF bucket` in one allocation (0xFF never occurs in
/// UTF-8, so the split is unambiguous), with its hash kept so a probe rarely reads the key and a
/// resize never rehashes it, and the bytes it was counted for.
struct Entry<V> {
    key: Box<[u8]>,
    hash: u64,
    weight: usize,
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
    /// The weights of the entries held.
    weights: usize,
}

impl<V> Shard<V> {
    /// The bytes this shard counts against the store's `max_bytes`. The table counts twice: a
    /// table doubles as it grows, and the allocations it outgrew (together smaller than the one
    /// it has) stay with the allocator, resident, reused only piecemeal by the keys.
    fn bytes(&self) -> usize {
        2 * self.table.allocation_size() + self.weights
    }
}

const SHARDS: usize = 64;
/// Bits 51..57 of the hash choose the shard: hashbrown uses the top seven for its tags and the
/// low bits for the bucket, so these leave both evenly spread within a shard.
const SHARD_SHIFT: u32 = 51;

const fn shard_index(hash: u64) -> usize {
    (hash >> SHARD_SHIFT) as usize % SHARDS
}
const MIN_SWEEP: usize = 64;
/// How many other shards a write over `max_bytes` asks to give up bytes, before its own.
const RELIEF_SHARDS: usize = 8;
/// The debt of a slot that must not be evicted while it is in use.
pub(crate) const PINNED: u64 = u64::MAX;

/// What a visit to a slot decided: done (the slot was updated in place without growing, or is
/// to stay as it is), done with a slot that may have grown in place (its bytes are counted again),
/// or a new slot to store.
pub(crate) enum Visit<R, V> {
    Done(R),
    Reweigh(R),
    Store(R, V),
}

/// A bounded, sharded table of slots keyed by (caller, bucket).
pub(crate) struct SlotTable<V> {
    shards: Box<[RwLock<Shard<V>>]>,
    hasher: foldhash::fast::RandomState,
    shard_capacity: usize,
    /// The sum of the shards' [`Shard::bytes`], kept as each changes under its lock.
    bytes: AtomicUsize,
    max_bytes: usize,
}

impl<V: Slot> SlotTable<V> {
    /// A table of the backend's capacity.
    pub(crate) fn for_backend(backend: &MemoryBackend) -> Self {
        Self::new(backend.max_keys, backend.max_bytes)
    }

    pub(crate) fn new(max_keys: usize, max_bytes: usize) -> Self {
        let shard_capacity = max_keys.div_ceil(SHARDS).max(1);
        let shards = (0..SHARDS)
            .map(|_| {
                RwLock::new(Shard {
                    table: HashTable::new(),
                    // A small table must sweep before its first MIN_SWEEP entries, or the bound
                    // would not hold until then.
                    sweep_at: MIN_SWEEP.min(shard_capacity),
                    weights: 0,
                })
            })
            .collect();
        Self {
            shards,
            hasher: foldhash::fast::RandomState::default(),
            shard_capacity,
            bytes: AtomicUsize::new(0),
            max_bytes,
        }
    }

    /// Runs `change` on a write-locked shard and carries the change in its bytes to the total.
    fn counted<R>(&self, shard: &mut Shard<V>, change: impl FnOnce(&mut Shard<V>) -> R) -> R {
        let before = shard.bytes();
        let r = change(shard);
        let after = shard.bytes();
        if after >= before {
            self.bytes.fetch_add(after - before, Ordering::Relaxed);
        } else {
            self.bytes.fetch_sub(before - after, Ordering::Relaxed);
        }
        r
    }

    /// How far the store is over `max_bytes`, with an eighth of a shard's share to spare, so a
    /// store at its bound evicts once per many insertions rather than on each.
    fn excess(&self) -> Option<usize> {
        let bytes = self.bytes.load(Ordering::Relaxed);
        (bytes > self.max_bytes).then(|| bytes - self.max_bytes + self.max_bytes / SHARDS / 8)
    }

    fn locate(&self, caller: &str, bucket: &str) -> (u64, &RwLock<Shard<V>>) {
        let hash = self.hasher.hash_one((caller, bucket));
        (hash, &self.shards[shard_index(hash)])
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
        let reweigh = {
            let read = shard.read().unwrap_or_else(PoisonError::into_inner);
            match f(read.table.find(hash, eq).map(|e| &e.slot)) {
                Visit::Done(r) => return r,
                Visit::Reweigh(r) => Some(r),
                Visit::Store(..) => None,
            }
        };
        let mut write = shard.write().unwrap_or_else(PoisonError::into_inner);
        let write = &mut *write;
        if let Some(entry) = write.table.find_mut(hash, eq) {
            let r = match reweigh {
                Some(r) => r,
                None => match f(Some(&entry.slot)) {
                    Visit::Done(r) => return r,
                    Visit::Reweigh(r) => r,
                    Visit::Store(r, slot) => {
                        entry.slot = slot;
                        r
                    }
                },
            };
            let weight = allocated(entry.key.len()) + entry.slot.heap_bytes();
            let old = std::mem::replace(&mut entry.weight, weight);
            self.counted(write, |shard| shard.weights = shard.weights - old + weight);
            self.relieve(hash, write, now_us);
            return r;
        }
        if let Some(r) = reweigh {
            // Evicted in between: nothing is left to count.
            return r;
        }
        let (r, slot) = match f(None) {
            Visit::Done(r) | Visit::Reweigh(r) => return r,
            Visit::Store(r, slot) => (r, slot),
        };
        if write.table.len() >= write.sweep_at {
            self.sweep(write, now_us, 0, 0);
        }
        // A full table doubles on its next insertion: when the store cannot afford that, make
        // room in this one instead, an eighth of it so the next insertions need not.
        let grows = write.table.len() == write.table.capacity();
        if grows
            && self.bytes.load(Ordering::Relaxed) + 2 * write.table.allocation_size().max(1024)
                > self.max_bytes
        {
            self.sweep(write, now_us, write.table.len() / 8 + 1, 0);
            if write.table.len() == write.table.capacity() {
                // What eviction left are tombstones, which hashbrown does not reuse as room:
                // reinsert the survivors into the cleared table, which has room for them all.
                self.counted(write, |shard| {
                    let survivors: Vec<Entry<V>> = shard.table.drain().collect();
                    for entry in survivors {
                        shard.table.insert_unique(entry.hash, entry, |e| e.hash);
                    }
                });
            }
        }
        let mut key = Vec::with_capacity(caller.len() + 1 + bucket.len());
        key.extend_from_slice(caller.as_bytes());
        key.push(0xFF);
        key.extend_from_slice(bucket.as_bytes());
        let weight = allocated(key.len()) + slot.heap_bytes();
        let entry = Entry {
            key: key.into_boxed_slice(),
            hash,
            weight,
            slot,
        };
        self.counted(write, |shard| {
            shard.weights += weight;
            shard.table.insert_unique(hash, entry, |e| e.hash);
        });
        self.relieve(hash, write, now_us);
        r
    }

    /// Brings the store back under `max_bytes` when it is over: evicts from the few shards after
    /// the caller's (those free to lock at once), then from the caller's own `shard` (locked by
    /// the caller), which holds the slot just written. Each gives at most an eighth of its slots'
    /// bytes, the slots owing least, so a caller who owes much is not evicted for being in a
    /// shard that happens to be small, nor a large slot for being the newest of its shard.
    fn relieve(&self, hash: u64, shard: &mut Shard<V>, now_us: u64) {
        let own = shard_index(hash);
        // A few shards a write: writes land on every shard alike, so all take their turn, and a
        // store kept over its bound by slots that cannot go (running requests' locks) costs
        // each write a few shard scans, not a scan of the whole store.
        for other in self.shards.iter().cycle().skip(own + 1).take(RELIEF_SHARDS) {
            let Some(excess) = self.excess() else {
                return;
            };
            if let Ok(mut other) = other.try_write() {
                self.sweep(&mut other, now_us, 0, excess);
            }
        }
        if let Some(excess) = self.excess() {
            self.sweep(shard, now_us, 0, excess);
        }
    }

    /// Drops idle slots; then, if the shard is still at its key capacity, evicts the slots owing
    /// least down to 7/8 of it (so a shard under pressure sweeps once per capacity/8 insertions,
    /// not every time), and enough more of them to free `free_count` slots and `free_bytes` (of
    /// bytes, at most an eighth of what its slots hold). A shard left mostly empty gives back its
    /// table's spare room.
    fn sweep(&self, shard: &mut Shard<V>, now_us: u64, free_count: usize, free_bytes: usize) {
        self.counted(shard, |shard| {
            let (before, before_len) = (shard.bytes(), shard.table.len());
            let mut freed_weights = 0;
            shard.table.retain(|e| {
                let idle = e.slot.is_idle(now_us);
                if idle {
                    freed_weights += e.weight;
                }
                !idle
            });
            shard.weights -= freed_weights;
            let len = shard.table.len();
            let keep = if len >= self.shard_capacity {
                self.shard_capacity - self.shard_capacity / 8 - 1
            } else {
                len
            };
            let freed = before.saturating_sub(shard.bytes());
            let (count, bytes) = (
                (len - keep).max(free_count.saturating_sub(before_len - len)),
                free_bytes.saturating_sub(freed).min(shard.weights / 8),
            );
            if count > 0 || bytes > 0 {
                evict_least_owing(shard, now_us, count, bytes);
            }
            if shard.table.len() < shard.table.capacity() / 4 {
                shard.table.shrink_to(shard.table.len() * 2, |e| e.hash);
            }
            shard.sweep_at = (shard.table.len() * 2)
                .clamp(MIN_SWEEP.min(self.shard_capacity), self.shard_capacity);
        });
    }

    /// Forgets the slot for the key, if there is one.
    #[cfg_attr(not(feature = "jwt"), allow(dead_code))]
    pub(crate) fn remove(&self, caller: &str, bucket: &str) {
        let (hash, shard) = self.locate(caller, bucket);
        let mut write = shard.write().unwrap_or_else(PoisonError::into_inner);
        self.counted(&mut write, |shard| {
            if let Ok(entry) = shard.table.find_entry(hash, |e| e.is(hash, caller, bucket)) {
                let (entry, _) = entry.remove();
                shard.weights -= entry.weight;
            }
        });
    }

    /// Drops every slot.
    #[cfg_attr(not(feature = "jwt"), allow(dead_code))]
    pub(crate) fn clear(&self) {
        for shard in &*self.shards {
            let mut shard = shard.write().unwrap_or_else(PoisonError::into_inner);
            self.counted(&mut shard, |shard| {
                shard.table.clear();
                shard.weights = 0;
            });
        }
    }

    /// Bytes counted against `max_bytes` now.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Keys held now, across shards.
    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.read().unwrap_or_else(PoisonError::into_inner).table.len())
            .sum()
    }
}

/// Evicts at least `count` slots and `bytes` of weight, the slots owing least first; pinned
/// slots stay whatever is asked.
fn evict_least_owing<V: Slot>(shard: &mut Shard<V>, now_us: u64, count: usize, bytes: usize) {
    let mut debts: Vec<(u64, usize)> = shard
        .table
        .iter()
        .map(|e| (e.slot.debt(now_us), e.weight))
        .filter(|&(debt, _)| debt != PINNED)
        .collect();
    debts.sort_unstable_by_key(|&(debt, _)| debt);
    // The least debt that must go: the prefix up to it frees what is asked.
    let (mut taken, mut freed) = (0, 0);
    let mut threshold = None;
    for &(debt, weight) in &debts {
        if taken >= count && freed >= bytes {
            break;
        }
        taken += 1;
        freed += weight;
        threshold = Some(debt);
    }
    let Some(threshold) = threshold else {
        return;
    };
    // Everything owing less than the threshold goes, and as many of those owing exactly it as
    // the prefix holds.
    let mut ties = debts[..taken]
        .iter()
        .filter(|&&(debt, _)| debt == threshold)
        .count();
    let mut weights = shard.weights;
    shard.table.retain(|e| {
        let debt = e.slot.debt(now_us);
        let go = debt != PINNED && (debt < threshold || (debt == threshold && ties > 0));
        if go {
            if debt == threshold {
                ties -= 1;
            }
            weights -= e.weight;
        }
        !go
    });
    shard.weights = weights;
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
        let table = SlotTable::new(64 * 1000, usize::MAX);
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
        let table = SlotTable::new(64, usize::MAX);
        for i in 0..1_000u64 {
            touch(&table, &format!("k{i}"), 0, 1 + i);
            assert!(table.len() <= 64, "{}", table.len());
        }
    }

    #[test]
    fn capacity_is_never_exceeded_and_the_deepest_debts_survive() {
        let table = SlotTable::new(64 * 100, usize::MAX);
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
        let table = SlotTable::new(1000, usize::MAX);
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
