//! The memory backend's byte bound (`max_bytes`) under a spray of new keys: the bytes a store
//! counts stay under the bound, the process's resident memory grows by no more than the bound,
//! and the callers who owe most (a rate-limited caller, a running idempotent request) keep their
//! state through the spray; version pins and deprecated-version usage stay under it too. Live heap bytes are counted exactly by a counting allocator; the
//! tests run one at a time so each reads the process's memory alone.
#![cfg(feature = "memory")]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use api_policy::backend::MemoryBackend;
use api_policy::clock::ManualClock;
use api_policy::idempotency::{
    Begin, Fingerprint, IdempotencyStore, MemoryIdempotencyStore, Outcome, RecordKey,
    StoredResponse, Terms,
};
use api_policy::rate_limit::{BucketKey, MemoryRateLimitStore, Quota};
use api_policy::versioning::{ApiVersion, MemoryVersionPinStore, VersionPinStore};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode};

/// One test at a time: the heap and resident memory are the process's, not a test's.
static ALONE: Mutex<()> = Mutex::new(());

/// The system allocator, counting the bytes it has handed out and not yet taken back.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to `System`; the counter only observes sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract for `alloc` is passed on as is.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract for `dealloc` is passed on as is.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's contract for `realloc` is passed on as is.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            LIVE.fetch_add(new_size, Ordering::Relaxed);
        }
        new
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Heap bytes this process holds now, as the program asked for them (allocator overhead aside).
fn live_heap_bytes() -> usize {
    LIVE.load(Ordering::Relaxed)
}

/// Resident memory of this process, in bytes.
fn resident_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm reads");
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|field| field.parse().ok())
        .expect("statm's second field is the resident page count");
    pages * 4096
}

const MIB: usize = 1 << 20;

/// What the allocator may keep resident beyond the live heap: the space between chunks freed by
/// evictions and chunks taken since. The live heap, counted exactly, is held to the bound itself.
const ALLOCATOR_SLACK: usize = MIB / 2;

/// What a store and the process hold while a spray runs, against the store's byte bound.
struct Footprint {
    max_bytes: usize,
    resident_before: usize,
    heap_before: usize,
    peak_counted: usize,
    peak_heap_growth: usize,
}

impl Footprint {
    fn start(max_bytes: usize) -> Self {
        Self {
            max_bytes,
            resident_before: resident_bytes(),
            heap_before: live_heap_bytes(),
            peak_counted: 0,
            peak_heap_growth: 0,
        }
    }

    /// Notes the store's count of its bytes now, and the live heap's growth.
    fn observe(&mut self, counted: usize) {
        self.peak_counted = self.peak_counted.max(counted);
        let growth = live_heap_bytes().saturating_sub(self.heap_before);
        self.peak_heap_growth = self.peak_heap_growth.max(growth);
    }

    /// Reports the peaks, and holds the count and the live heap to the bound, and resident
    /// memory to the bound and the allocator's slack.
    fn check(&self, what: &str) {
        let max = self.max_bytes;
        let resident_growth = resident_bytes().saturating_sub(self.resident_before);
        println!(
            "{what}: {:.1} MiB counted at peak (bound {} MiB), live heap grew {:.1} MiB at peak, resident memory grew {:.1} MiB",
            self.peak_counted as f64 / MIB as f64,
            max / MIB,
            self.peak_heap_growth as f64 / MIB as f64,
            resident_growth as f64 / MIB as f64
        );
        assert!(
            self.peak_counted <= max,
            "counted {} bytes",
            self.peak_counted
        );
        assert!(
            self.peak_heap_growth <= max,
            "the live heap grew {} bytes, over the {max}-byte bound",
            self.peak_heap_growth
        );
        assert!(
            resident_growth <= max + ALLOCATOR_SLACK,
            "resident memory grew {resident_growth} bytes, over the {max}-byte bound and the allocator's slack"
        );
    }
}

/// Runs an async test alone (see [`ALONE`]), on a runtime of one thread.
fn alone_on_a_runtime(test: impl std::future::Future<Output = ()>) {
    let _alone = ALONE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime")
        .block_on(test);
}

fn backend(max_bytes: usize, clock: &ManualClock) -> MemoryBackend {
    MemoryBackend::builder()
        // Far above what the bytes allow, so the byte bound is the one that binds.
        .max_keys(100_000_000)
        .max_bytes(max_bytes)
        .clock(clock.clone())
        .build()
        .expect("a valid backend")
}

#[test]
fn a_million_new_keys_stay_within_max_bytes_and_spare_the_limited_caller() {
    let _alone = ALONE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    const MAX_BYTES: usize = 16 * MIB;
    const SPRAY: usize = 1_000_000;
    let clock = ManualClock::at_secs(1_700_000_000);
    let store = MemoryRateLimitStore::new(&backend(MAX_BYTES, &clock));
    let quota = Quota::per_minute(10);
    let victim = BucketKey {
        caller: "k:the-caller-who-spent-their-quota",
        bucket: "default",
        overridable: true,
    };
    for _ in 0..10 {
        assert!(store.decide_now(victim, &quota, 1).allowed);
    }
    assert!(!store.decide_now(victim, &quota, 1).allowed);

    let mut footprint = Footprint::start(MAX_BYTES);
    let mut caller = String::with_capacity(64);
    for i in 0..SPRAY {
        use std::fmt::Write;
        caller.clear();
        // Keys of 20 to 60 bytes, as client addresses and API key ids are.
        let _ = write!(caller, "ip:{i:08x}:{}", "x".repeat(i % 41));
        let key = BucketKey {
            caller: &caller,
            bucket: "default",
            overridable: true,
        };
        assert!(store.decide_now(key, &quota, 1).allowed);
        footprint.observe(store.bytes());
        if i % 1000 == 999 {
            // A millisecond per thousand keys: the spray takes one second of the clock, far
            // less than the victim's minute.
            clock.advance(Duration::from_millis(1));
        }
        if i % 50_000 == 49_999 {
            assert!(
                !store.decide_now(victim, &quota, 1).allowed,
                "after {} new keys the limited caller was let through",
                i + 1
            );
        }
    }
    footprint.check(&format!("{SPRAY} new keys, {} held", store.len()));
    assert!(
        store.len() < SPRAY / 2,
        "{} keys held: the bound evicted little",
        store.len()
    );
    assert!(!store.decide_now(victim, &quota, 1).allowed);
}

fn record(key: &str) -> RecordKey<'_> {
    RecordKey {
        scope: "k:payer",
        key,
    }
}

fn fingerprint() -> Fingerprint {
    Fingerprint::of_bytes(b"POST /payments {\"amount\":100}")
}

#[test]
fn kept_responses_count_by_their_size_and_running_requests_are_never_evicted() {
    alone_on_a_runtime(kept_responses());
}

async fn kept_responses() {
    const MAX_BYTES: usize = 8 * MIB;
    const BODY: usize = 64 * 1024;
    const RECORDS: usize = 1_000;
    let terms = Terms {
        lease: Duration::from_secs(3600),
        retention: Duration::from_secs(24 * 3600),
    };
    let clock = ManualClock::at_secs(1_700_000_000);
    let store = MemoryIdempotencyStore::new(&backend(MAX_BYTES, &clock));
    // Requests still running: their locks must outlive any spray.
    for i in 0..20 {
        let key = format!("running-{i}");
        let begun = store.begin(record(&key), &fingerprint(), &terms).await;
        assert!(matches!(begun, Ok(Begin::Started { .. })), "{begun:?}");
    }

    let mut footprint = Footprint::start(MAX_BYTES);
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    for i in 0..RECORDS {
        let key = format!("payment-{i}");
        let Ok(Begin::Started { owner, .. }) =
            store.begin(record(&key), &fingerprint(), &terms).await
        else {
            panic!("{key} did not start");
        };
        let body = Bytes::from(vec![b'a' + (i % 26) as u8; BODY]);
        let outcome = Outcome::Response(StoredResponse::new(StatusCode::CREATED, &headers, body));
        let completed = store.complete(record(&key), &owner, &outcome, &terms).await;
        assert!(matches!(completed, Ok(true)), "{key}: {completed:?}");
        drop((key, outcome));
        footprint.observe(store.bytes());
        // Later records have more retention left, so the earliest go first.
        clock.advance(Duration::from_secs(1));
    }
    footprint.check(&format!(
        "{RECORDS} responses of {} KiB, {} records held",
        BODY / 1024,
        store.len()
    ));
    // 1,000 x 64 KiB is 64 MiB: held only in part, by their bytes, far under any key bound.
    assert!(store.len() < RECORDS / 4, "{} records held", store.len());
    for i in 0..20 {
        let key = format!("running-{i}");
        let begun = store.begin(record(&key), &fingerprint(), &terms).await;
        assert!(
            matches!(begun, Ok(Begin::InFlight { .. })),
            "{key} lost its lock: {begun:?}"
        );
    }
    let newest = format!("payment-{}", RECORDS - 1);
    let replay = store.begin(record(&newest), &fingerprint(), &terms).await;
    assert!(matches!(replay, Ok(Begin::Finished(_))), "{replay:?}");
    let oldest = store
        .begin(record("payment-0"), &fingerprint(), &terms)
        .await;
    assert!(
        matches!(oldest, Ok(Begin::Started { .. })),
        "the oldest response should have gone first: {oldest:?}"
    );
}

#[test]
fn an_expired_response_that_gives_way_to_a_new_attempt_is_no_longer_counted() {
    let _alone = ALONE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let terms = Terms {
        lease: Duration::from_secs(60),
        retention: Duration::from_secs(3600),
    };
    let clock = ManualClock::at_secs(1_700_000_000);
    let store = MemoryIdempotencyStore::new(&backend(8 * MIB, &clock));
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime")
        .block_on(async {
            let Ok(Begin::Started { owner, .. }) =
                store.begin(record("reused"), &fingerprint(), &terms).await
            else {
                panic!("the first attempt did not start");
            };
            let body = Bytes::from(vec![b'r'; 256 * 1024]);
            let outcome =
                Outcome::Response(StoredResponse::new(StatusCode::OK, &HeaderMap::new(), body));
            let completed = store
                .complete(record("reused"), &owner, &outcome, &terms)
                .await;
            assert!(matches!(completed, Ok(true)), "{completed:?}");
            assert!(store.bytes() > 256 * 1024, "{} bytes", store.bytes());
            // Past its retention, the key starts a new attempt in the same slot.
            clock.advance(Duration::from_secs(3601));
            let again = store.begin(record("reused"), &fingerprint(), &terms).await;
            assert!(matches!(again, Ok(Begin::Started { .. })), "{again:?}");
            assert!(
                store.bytes() < 64 * 1024,
                "{} bytes still counted for the response that gave way",
                store.bytes()
            );
        });
}

#[test]
fn version_pins_and_usage_from_a_million_callers_stay_within_max_bytes() {
    alone_on_a_runtime(pins_and_usage());
}

async fn pins_and_usage() {
    const MAX_BYTES: usize = 16 * MIB;
    const SPRAY: usize = 1_000_000;
    const DAY: u64 = 20_000;
    let clock = ManualClock::at_secs(1_700_000_000);
    let store = MemoryVersionPinStore::new(&backend(MAX_BYTES, &clock));
    let (v1, v2) = (ApiVersion::Major(1), ApiVersion::Major(2));
    store
        .pin_if_absent("u:first", v1)
        .await
        .expect("the memory store does not fail");
    let mut footprint = Footprint::start(MAX_BYTES);
    let mut caller = String::with_capacity(96);
    for i in 0..SPRAY {
        use std::fmt::Write;
        caller.clear();
        // Callers' keys of 12 to 72 bytes, as principals' ids are.
        let _ = write!(caller, "u:{i:08x}:{}", "x".repeat(i % 61));
        let pinned = store.pin_if_absent(&caller, v2).await;
        assert_eq!(pinned.ok(), Some(v2));
        store
            .record_call(v1, &caller, DAY)
            .await
            .expect("the memory store does not fail");
        footprint.observe(store.bytes());
    }
    footprint.check(&format!("{SPRAY} callers pinned and counted"));
    assert_eq!(store.pinned("u:first").await.ok(), Some(Some(v1)));
    assert_eq!(
        store.pinned(&caller).await.ok(),
        Some(None),
        "the last caller, past the bound, is resolved as unpinned"
    );
    let usage = store.usage(v1, DAY, DAY).await.expect("a report");
    let calls: u64 = usage.iter().map(|u| u.calls).sum();
    assert_eq!(
        calls, SPRAY as u64,
        "every call counted, past the bound as (others)"
    );
    assert!(usage.iter().any(|u| u.caller == "(others)"));
}
