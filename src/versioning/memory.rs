//! [`VersionPinStore`] on the [`MemoryBackend`].

use std::hash::RandomState;
use std::sync::{Arc, Mutex, PoisonError};

use super::store::{Usage, VersionPinStore, report};
use super::version::ApiVersion;
use crate::backend::MemoryBackend;
use crate::backend::memory::allocated;
use crate::error::StoreError;

/// A map that tells what its table allocates; callers' names are keys a client's credentials
/// choose, so the hasher is seeded as std's is.
type Map<K, V> = hashbrown::HashMap<K, V, RandomState>;

#[derive(Default)]
struct State {
    pins: Map<String, ApiVersion>,
    /// (version, day) -> caller -> calls; each day holds `(others)` from its start.
    calls: Map<(ApiVersion, u64), Map<String, u64>>,
    counted: usize,
    /// What the pins' table and names take from the allocator.
    pin_bytes: usize,
    /// What the counts' tables and names take.
    usage_bytes: usize,
}

/// What a first table takes (hashbrown's four buckets and their control bytes); each growth
/// after doubles the table.
const FIRST_TABLE: usize = 256;

/// The most bytes an insertion of a name of `len` bytes adds to `map` while it runs: the name,
/// and, when the table is full, its doubled table beside the old one until the move is done.
fn insertion<K: Eq + std::hash::Hash, V>(map: &Map<K, V>, len: usize) -> usize {
    let growth = if map.len() == map.capacity() {
        2 * map.allocation_size().max(FIRST_TABLE)
    } else {
        0
    };
    allocated(len) + growth
}

/// Inserts, and counts the table's growth and the `owned` bytes the entry holds outside it.
fn insert_counted<K: Eq + std::hash::Hash, V>(
    bytes: &mut usize,
    map: &mut Map<K, V>,
    (key, value): (K, V),
    owned: usize,
) {
    let table = map.allocation_size();
    map.insert(key, value);
    *bytes = (*bytes + map.allocation_size() + owned).saturating_sub(table);
}

/// What a map of names takes: its table and its names.
fn held<V>(map: &Map<String, V>) -> usize {
    map.allocation_size() + map.keys().map(|k| allocated(k.len())).sum::<usize>()
}

impl State {
    /// Drops the days `gone` names, and what they held from the counts.
    fn drop_days(&mut self, gone: impl Fn(u64) -> bool) {
        for (_, callers) in self.calls.extract_if(|(_, day), _| gone(*day)) {
            self.usage_bytes = self.usage_bytes.saturating_sub(held(&callers));
            // `(others)` is not a caller: it is not counted against `max_keys`.
            self.counted = self.counted.saturating_sub(callers.len().saturating_sub(1));
        }
    }
}

/// Pins and usage counts in this process. Clones share them.
///
/// Bounded by the backend's `max_keys` (pins, and callers counted) and `max_bytes` (the
/// callers' names and the tables that hold them; half for pins, half for usage, so neither can
/// crowd out the other). A pin beyond the bounds is not kept (the caller is then resolved as if
/// unpinned, and [`set_pin`](VersionPinStore::set_pin) fails); usage beyond them is counted under
/// the caller `(others)`, and a new day that finds no room drops the oldest earlier day. Days
/// older than 90 are dropped as new ones arrive.
#[derive(Clone)]
pub struct MemoryVersionPinStore {
    state: Arc<Mutex<State>>,
    max_keys: usize,
    /// The bytes for pins, and as many for usage.
    budget: usize,
}

impl std::fmt::Debug for MemoryVersionPinStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryVersionPinStore")
            .field("max_keys", &self.max_keys)
            .field("max_bytes", &(2 * self.budget))
            .finish_non_exhaustive()
    }
}

/// How many days of usage the memory store keeps.
const KEEP_DAYS: u64 = 90;

/// Whom usage beyond the store's bounds is counted under.
const OTHERS: &str = "(others)";

impl MemoryVersionPinStore {
    /// A store with the backend's capacity.
    #[must_use]
    pub fn new(backend: &MemoryBackend) -> Self {
        Self {
            state: Arc::new(Mutex::new(State::default())),
            max_keys: backend.max_keys(),
            budget: backend.max_bytes() / 2,
        }
    }

    /// Bytes held now, as counted against the backend's
    /// [`max_bytes`](crate::backend::MemoryBackend::max_bytes): the callers' names in pins and
    /// counts, and the tables that hold them.
    #[must_use]
    pub fn bytes(&self) -> usize {
        let state = self.state();
        state.pin_bytes + state.usage_bytes
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Pins `caller`, if the bounds allow a new pin; whether it is pinned now.
    fn pin(&self, state: &mut State, caller: &str, version: ApiVersion) -> bool {
        if let Some(pin) = state.pins.get_mut(caller) {
            *pin = version;
            return true;
        }
        let cost = insertion(&state.pins, caller.len());
        if state.pins.len() >= self.max_keys || state.pin_bytes + cost > self.budget {
            return false;
        }
        let pin = (caller.to_string(), version);
        insert_counted(
            &mut state.pin_bytes,
            &mut state.pins,
            pin,
            allocated(caller.len()),
        );
        true
    }

    /// Starts the counts of a version's day, with `(others)` in them so that a call can always
    /// be counted; drops days older than the ones kept, and, when there is no room, the oldest
    /// days before this one. `false` when there is no room even so: today's counts of other
    /// versions fill the store.
    fn start_day(&self, state: &mut State, version: ApiVersion, day: u64) -> bool {
        state.drop_days(|d| d + KEEP_DAYS <= day);
        let first_day = FIRST_TABLE + allocated(OTHERS.len());
        while state.usage_bytes + insertion(&state.calls, 0) + first_day > self.budget {
            let oldest = state
                .calls
                .keys()
                .map(|(_, d)| *d)
                .filter(|d| *d < day)
                .min();
            let Some(oldest) = oldest else {
                return false;
            };
            state.drop_days(|d| d == oldest);
        }
        let mut callers = Map::default();
        callers.insert(OTHERS.to_string(), 0);
        let owned = held(&callers);
        let entry = ((version, day), callers);
        insert_counted(&mut state.usage_bytes, &mut state.calls, entry, owned);
        true
    }

    /// Counts one call.
    fn count(&self, version: ApiVersion, caller: &str, day: u64) {
        let mut state = self.state();
        if !state.calls.contains_key(&(version, day)) && !self.start_day(&mut state, version, day) {
            return;
        }
        let State {
            calls,
            counted,
            usage_bytes,
            ..
        } = &mut *state;
        let Some(callers) = calls.get_mut(&(version, day)) else {
            return;
        };
        if let Some(calls) = callers.get_mut(caller) {
            *calls += 1;
            return;
        }
        let cost = insertion(callers, caller.len());
        if *counted < self.max_keys && *usage_bytes + cost <= self.budget {
            insert_counted(
                usage_bytes,
                callers,
                (caller.to_string(), 1),
                allocated(caller.len()),
            );
            *counted += 1;
        } else if let Some(others) = callers.get_mut(OTHERS) {
            *others += 1;
        }
    }
}

impl VersionPinStore for MemoryVersionPinStore {
    async fn pinned(&self, caller: &str) -> Result<Option<ApiVersion>, StoreError> {
        Ok(self.state().pins.get(caller).copied())
    }

    async fn pin_if_absent(
        &self,
        caller: &str,
        version: ApiVersion,
    ) -> Result<ApiVersion, StoreError> {
        let mut state = self.state();
        if let Some(pinned) = state.pins.get(caller) {
            return Ok(*pinned);
        }
        self.pin(&mut state, caller, version);
        Ok(version)
    }

    async fn set_pin(&self, caller: &str, version: Option<ApiVersion>) -> Result<(), StoreError> {
        let mut state = self.state();
        match version {
            Some(v) if self.pin(&mut state, caller, v) => {}
            Some(_) => return Err(StoreError::Unavailable("the memory pin store is full")),
            None => {
                if state.pins.remove(caller).is_some() {
                    state.pin_bytes = state.pin_bytes.saturating_sub(allocated(caller.len()));
                }
            }
        }
        Ok(())
    }

    async fn record_call(
        &self,
        version: ApiVersion,
        caller: &str,
        day: u64,
    ) -> Result<(), StoreError> {
        self.count(version, caller, day);
        Ok(())
    }

    fn record_call_detached(&self, version: ApiVersion, caller: String, day: u64) {
        // Nothing to wait for in memory: no task to spawn.
        self.count(version, &caller, day);
    }

    async fn usage(
        &self,
        version: ApiVersion,
        first: u64,
        last: u64,
    ) -> Result<Vec<Usage>, StoreError> {
        let state = self.state();
        let days = state
            .calls
            .iter()
            .filter(|((v, day), _)| *v == version && (first..=last).contains(day))
            .map(|((_, day), callers)| {
                let counted = callers.iter().filter(|(_, n)| **n > 0);
                (*day, counted.map(|(c, n)| (c.clone(), *n)).collect())
            })
            .collect::<Vec<_>>();
        Ok(report(days))
    }

    fn backend_name(&self) -> &'static str {
        "memory"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::memory::MIN_BYTES;

    fn store() -> MemoryVersionPinStore {
        let backend = MemoryBackend::builder()
            .max_keys(1_000_000)
            .max_bytes(MIN_BYTES)
            .build();
        MemoryVersionPinStore::new(&backend.unwrap())
    }

    fn name(i: usize) -> String {
        format!("u:{i:04}{}", "x".repeat(1000))
    }

    /// The bytes counted as the store goes equal those counted from scratch, each part within
    /// its half of the bound.
    fn exact(store: &MemoryVersionPinStore) {
        let state = store.state();
        let days: usize = state.calls.values().map(held).sum();
        assert_eq!(state.pin_bytes, held(&state.pins));
        assert_eq!(state.usage_bytes, state.calls.allocation_size() + days);
        let callers: usize = state.calls.values().map(|m| m.len() - 1).sum();
        assert_eq!(
            state.counted, callers,
            "callers counted, `(others)` not among them"
        );
        assert!(state.pin_bytes <= MIN_BYTES / 2 && state.usage_bytes <= MIN_BYTES / 2);
    }

    #[tokio::test]
    async fn pins_stop_at_their_half_of_the_byte_bound() {
        let store = store();
        let v2 = ApiVersion::Major(2);
        let mut kept = 0;
        for i in 0..200 {
            assert_eq!(store.pin_if_absent(&name(i), v2).await.ok(), Some(v2));
            if store.pinned(&name(i)).await.unwrap() == Some(v2) {
                kept += 1;
            }
            exact(&store);
        }
        assert!(
            (15..32).contains(&kept),
            "{kept} pins of 1 KB kept in 32 KiB"
        );
        assert!(
            store.set_pin(&name(500), Some(v2)).await.is_err(),
            "a new pin beyond the bound is refused"
        );
        let v3 = ApiVersion::Major(3);
        store.set_pin(&name(0), Some(v3)).await.unwrap();
        assert_eq!(
            store.pinned(&name(0)).await.unwrap(),
            Some(v3),
            "a kept pin moves"
        );
        store.set_pin(&name(0), None).await.unwrap();
        exact(&store);
        store.set_pin(&name(500), Some(v2)).await.unwrap();
        assert_eq!(
            store.pinned(&name(500)).await.unwrap(),
            Some(v2),
            "room again"
        );
    }

    #[tokio::test]
    async fn usage_beyond_the_byte_bound_is_counted_under_others_on_every_day() {
        let store = store();
        let v1 = ApiVersion::Major(1);
        for i in 0..200 {
            store.record_call(v1, &name(i), 20_000).await.unwrap();
            exact(&store);
        }
        let usage = store.usage(v1, 20_000, 20_000).await.unwrap();
        let total: u64 = usage.iter().map(|u| u.calls).sum();
        assert_eq!(
            total, 200,
            "every call is counted, under its caller or (others)"
        );
        let others = usage.iter().find(|u| u.caller == OTHERS).map(|u| u.calls);
        assert!(others.is_some_and(|n| n > 100), "{others:?}");
        // A full store still counts the next days' calls, dropping the oldest day for room.
        for day in 20_001..20_010 {
            store.record_call(v1, &name(0), day).await.unwrap();
            exact(&store);
            let today = store.usage(v1, day, day).await.unwrap();
            assert_eq!(today.iter().map(|u| u.calls).sum::<u64>(), 1, "day {day}");
        }
        // 90 days on, the days before are dropped, and their bytes with them.
        let before = store.bytes();
        store.record_call(v1, "u:later", 20_200).await.unwrap();
        assert!(store.bytes() < before);
        exact(&store);
        let later = store.usage(v1, 20_200, 20_200).await.unwrap();
        assert_eq!(later.len(), 1, "no (others) with no calls: {later:?}");
    }

    #[tokio::test]
    async fn a_version_starting_its_day_never_drops_another_versions_counts_of_that_day() {
        let store = store();
        let (v1, v2) = (ApiVersion::Major(1), ApiVersion::Major(2));
        for i in 0..200 {
            store.record_call(v1, &name(i), 20_000).await.unwrap();
        }
        store.record_call(v2, "u:other", 20_000).await.unwrap();
        exact(&store);
        let v1_today = store.usage(v1, 20_000, 20_000).await.unwrap();
        assert_eq!(v1_today.iter().map(|u| u.calls).sum::<u64>(), 200);
        // With no older day to drop and no room, v2's call goes uncounted rather than v1's.
        let v2_today = store.usage(v2, 20_000, 20_000).await.unwrap();
        assert!(v2_today.iter().map(|u| u.calls).sum::<u64>() <= 1);
    }
}
