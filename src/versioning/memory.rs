//! [`VersionPinStore`] on the [`MemoryBackend`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use super::store::{Usage, VersionPinStore, report};
use super::version::ApiVersion;
use crate::backend::MemoryBackend;
use crate::error::StoreError;

#[derive(Default)]
struct State {
    pins: HashMap<String, ApiVersion>,
    /// (version, day) -> caller -> calls.
    calls: HashMap<(ApiVersion, u64), HashMap<String, u64>>,
    counted: usize,
}

/// Pins and usage counts in this process. Clones share them.
///
/// Bounded by the backend's `max_keys`: pins beyond it are not kept (the caller is then
/// resolved as if unpinned), and usage beyond it is counted under the caller `(others)`. Days
/// older than 90 are dropped as new ones arrive.
#[derive(Clone)]
pub struct MemoryVersionPinStore {
    state: Arc<Mutex<State>>,
    max_keys: usize,
}

impl std::fmt::Debug for MemoryVersionPinStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryVersionPinStore")
            .field("max_keys", &self.max_keys)
            .finish_non_exhaustive()
    }
}

/// How many days of usage the memory store keeps.
const KEEP_DAYS: u64 = 90;

impl MemoryVersionPinStore {
    /// A store with the backend's capacity.
    #[must_use]
    pub fn new(backend: &MemoryBackend) -> Self {
        Self {
            state: Arc::new(Mutex::new(State::default())),
            max_keys: backend.max_keys(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl MemoryVersionPinStore {
    /// Counts one call, dropping days older than the ones kept as a new day starts.
    fn count(&self, version: ApiVersion, caller: &str, day: u64) {
        let mut state = self.state();
        if !state.calls.contains_key(&(version, day)) {
            let before = state.calls.len();
            state.calls.retain(|(_, d), _| d + KEEP_DAYS > day);
            if state.calls.len() != before {
                state.counted = state.calls.values().map(HashMap::len).sum();
            }
        }
        let full = state.counted >= self.max_keys;
        let callers = state.calls.entry((version, day)).or_default();
        let key = if full && !callers.contains_key(caller) {
            "(others)"
        } else {
            caller
        };
        let fresh = !callers.contains_key(key);
        *callers.entry(key.to_string()).or_insert(0) += 1;
        if fresh {
            state.counted += 1;
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
        if state.pins.len() < self.max_keys {
            state.pins.insert(caller.to_string(), version);
        }
        Ok(version)
    }

    async fn set_pin(&self, caller: &str, version: Option<ApiVersion>) -> Result<(), StoreError> {
        let mut state = self.state();
        match version {
            Some(v) if state.pins.len() < self.max_keys || state.pins.contains_key(caller) => {
                state.pins.insert(caller.to_string(), v);
            }
            Some(_) => return Err(StoreError::Unavailable("the memory pin store is full")),
            None => {
                state.pins.remove(caller);
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
                (*day, callers.iter().map(|(c, n)| (c.clone(), *n)).collect())
            })
            .collect::<Vec<_>>();
        Ok(report(days))
    }

    fn backend_name(&self) -> &'static str {
        "memory"
    }
}
