//! [`RateLimitStore`] on the [`MemoryBackend`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use super::quota::{Algorithm, Quota};
use super::store::{BucketKey, Decision, RateLimitStore};
use super::verdict::{Window, gcra, sliding_window};
use crate::backend::MemoryBackend;
use crate::backend::memory::{Slot, SlotTable, Visit, allocated};
use crate::clock::SharedClock;
use crate::error::StoreError;

enum RateSlot {
    /// GCRA's theoretical arrival time, in microseconds; updated by compare-and-swap.
    Gcra { tat: AtomicU64 },
    /// Boxed, so the common GCRA slot stays one word.
    SlidingWindow(Box<Mutex<Window>>),
}

impl Slot for RateSlot {
    fn is_idle(&self, now: u64) -> bool {
        self.debt(now) == 0
    }

    fn debt(&self, now: u64) -> u64 {
        match self {
            RateSlot::Gcra { tat } => tat.load(Ordering::Acquire).saturating_sub(now),
            RateSlot::SlidingWindow(state) => {
                let state = state.lock().unwrap_or_else(PoisonError::into_inner);
                // Both counts are spent once the window after the current one has passed.
                (state.index.saturating_add(2))
                    .saturating_mul(state.period_us)
                    .saturating_sub(now)
            }
        }
    }

    fn heap_bytes(&self) -> usize {
        match self {
            RateSlot::Gcra { .. } => 0,
            RateSlot::SlidingWindow(_) => allocated(size_of::<Mutex<Window>>()),
        }
    }
}

struct Inner {
    table: SlotTable<RateSlot>,
    overrides: RwLock<HashMap<Box<str>, Quota>>,
    /// Lets the common case (no overrides at all) skip the override lock.
    override_count: AtomicUsize,
    clock: SharedClock,
}

/// Rate-limit state in this process. Clones share every bucket.
///
/// ```
/// use api_policy::backend::MemoryBackend;
/// use api_policy::rate_limit::{BucketKey, MemoryRateLimitStore, Quota};
///
/// let store = MemoryRateLimitStore::new(&MemoryBackend::new());
/// let key = BucketKey { caller: "s:acme", bucket: "default", overridable: true };
/// let decision = store.decide_now(key, &Quota::per_minute(10), 1);
/// assert!(decision.allowed);
/// assert_eq!(decision.remaining, 9);
/// ```
#[derive(Clone)]
pub struct MemoryRateLimitStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for MemoryRateLimitStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryRateLimitStore")
            .field("keys", &self.inner.table.len())
            .finish_non_exhaustive()
    }
}

impl MemoryRateLimitStore {
    /// A store with the backend's capacity and clock.
    #[must_use]
    pub fn new(backend: &MemoryBackend) -> Self {
        Self {
            inner: Arc::new(Inner {
                table: SlotTable::for_backend(backend),
                overrides: RwLock::new(HashMap::new()),
                override_count: AtomicUsize::new(0),
                clock: backend.clock().clone(),
            }),
        }
    }

    /// Buckets held now.
    #[must_use]
    pub fn len(&self) -> usize {
        self.inner.table.len()
    }

    /// Bytes held now, as counted against the backend's
    /// [`max_bytes`](crate::backend::MemoryBackend::max_bytes).
    #[must_use]
    pub fn bytes(&self) -> usize {
        self.inner.table.bytes()
    }

    /// Whether no bucket is held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The decision, synchronously: the memory store never waits.
    #[must_use]
    pub fn decide_now(&self, key: BucketKey<'_>, quota: &Quota, cost: u32) -> Decision {
        let inner = &*self.inner;
        let quota = if key.overridable && inner.override_count.load(Ordering::Acquire) > 0 {
            let overrides = inner
                .overrides
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            overrides.get(key.caller).copied().unwrap_or(*quota)
        } else {
            *quota
        };
        let now = inner.clock.now_micros();
        // A refusal stores nothing, and a slot of the other algorithm counts as fresh and is
        // replaced only by an admitted request: what decide.lua does with its one state string.
        let verdict = inner.table.with(key.caller, key.bucket, now, |slot| {
            match (slot, quota.algorithm()) {
                (Some(RateSlot::SlidingWindow(state)), Algorithm::SlidingWindow) => {
                    let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
                    let (verdict, next) = sliding_window(*state, now, &quota, cost);
                    if let Some(next) = next {
                        *state = next;
                    }
                    Visit::Done(verdict)
                }
                (_, Algorithm::SlidingWindow) => {
                    match sliding_window(Window::default(), now, &quota, cost) {
                        (verdict, Some(next)) => Visit::Store(
                            verdict,
                            RateSlot::SlidingWindow(Box::new(Mutex::new(next))),
                        ),
                        (verdict, None) => Visit::Done(verdict),
                    }
                }
                (Some(RateSlot::Gcra { tat }), _) => {
                    let mut current = tat.load(Ordering::Acquire);
                    loop {
                        let (verdict, next) = gcra(current, now, &quota, cost);
                        let Some(next) = next else {
                            return Visit::Done(verdict);
                        };
                        match tat.compare_exchange_weak(
                            current,
                            next,
                            Ordering::AcqRel,
                            Ordering::Acquire,
                        ) {
                            Ok(_) => return Visit::Done(verdict),
                            Err(actual) => current = actual,
                        }
                    }
                }
                (_, _) => match gcra(0, now, &quota, cost) {
                    (verdict, Some(next)) => Visit::Store(
                        verdict,
                        RateSlot::Gcra {
                            tat: AtomicU64::new(next),
                        },
                    ),
                    (verdict, None) => Visit::Done(verdict),
                },
            }
        });
        Decision::new(verdict, quota, now)
    }
}

impl RateLimitStore for MemoryRateLimitStore {
    async fn decide(
        &self,
        key: BucketKey<'_>,
        quota: &Quota,
        cost: u32,
    ) -> Result<Decision, StoreError> {
        Ok(self.decide_now(key, quota, cost))
    }

    fn decide_immediately(
        &self,
        key: BucketKey<'_>,
        quota: &Quota,
        cost: u32,
    ) -> Option<Result<Decision, StoreError>> {
        Some(Ok(self.decide_now(key, quota, cost)))
    }

    async fn set_override(&self, caller: &str, quota: Option<Quota>) -> Result<(), StoreError> {
        if let Some(q) = &quota {
            q.validate("override")?;
        }
        let mut overrides = self
            .inner
            .overrides
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        match quota {
            Some(q) => overrides.insert(caller.into(), q),
            None => overrides.remove(caller),
        };
        self.inner
            .override_count
            .store(overrides.len(), Ordering::Release);
        Ok(())
    }

    fn backend_name(&self) -> &'static str {
        "memory"
    }
}
