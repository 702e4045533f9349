//! One conformance suite for rate-limit stores, run against the memory backend and a real Redis.
//! Every scenario drives a manual clock, so both backends see the same times.

#[macro_use]
mod common;

use std::time::Duration;

use api_policy::backend::{MemoryBackend, RedisBackend};
use api_policy::clock::ManualClock;
use api_policy::rate_limit::{
    Algorithm, BucketKey, Decision, MemoryRateLimitStore, Quota, RateLimitStore,
    RedisRateLimitStore,
};

const S: u64 = 1_000_000;
/// A whole minute, so window boundaries fall on round numbers.
const T0: u64 = 1_700_000_040 * S;

fn key(caller: &str) -> BucketKey<'_> {
    BucketKey {
        caller,
        bucket: "default",
        overridable: true,
    }
}

async fn decide<St: RateLimitStore>(
    store: &St,
    caller: &str,
    quota: &Quota,
    cost: u32,
) -> Decision {
    store
        .decide(key(caller), quota, cost)
        .await
        .expect("store answers")
}

// ---- scenarios -------------------------------------------------------------------------------

/// SEMANTICS.md rate limiting, item 4.
async fn gcra_reference_vectors<St: RateLimitStore>(store: St, clock: ManualClock) {
    let q = Quota::new(5, Duration::from_secs(5));
    for expected in [4, 3, 2, 1, 0] {
        let d = decide(&store, "p:a", &q, 1).await;
        assert!(d.allowed);
        assert_eq!(d.remaining, expected);
        assert_eq!(d.limit(), 5);
        assert_eq!(d.now_us, T0);
    }
    let d = decide(&store, "p:a", &q, 1).await;
    assert!(!d.allowed);
    assert_eq!(d.remaining, 0);
    assert_eq!(d.retry_after_us, Some(S));
    clock.advance(Duration::from_secs(3));
    let d = decide(&store, "p:a", &q, 1).await;
    assert!(d.allowed);
    assert_eq!(d.remaining, 2);
    // A cost above the burst can never pass, and says so by having no retry time.
    let d = decide(&store, "p:b", &q, 6).await;
    assert!(!d.allowed);
    assert_eq!(d.retry_after_us, None);
}

/// SEMANTICS.md rate limiting, item 5: 10 at 0:59 and 10 at 1:00 under 10/min.
async fn window_boundary_burst_is_refused<St: RateLimitStore>(store: St, clock: ManualClock) {
    for algorithm in [Algorithm::Gcra, Algorithm::SlidingWindow] {
        clock.set_micros(T0 + 59 * S);
        let caller = format!("p:{algorithm:?}");
        let q = Quota::per_minute(10).with_algorithm(algorithm);
        for _ in 0..10 {
            assert!(
                decide(&store, &caller, &q, 1).await.allowed,
                "{algorithm:?}: first batch"
            );
        }
        clock.set_micros(T0 + 60 * S);
        let mut admitted = 0;
        for _ in 0..10 {
            admitted += u32::from(decide(&store, &caller, &q, 1).await.allowed);
        }
        assert_eq!(admitted, 0, "{algorithm:?} let the second batch through");
    }
}

async fn sliding_window_weights_the_previous_window<St: RateLimitStore>(
    store: St,
    clock: ManualClock,
) {
    let q = Quota::per_minute(10).with_algorithm(Algorithm::SlidingWindow);
    clock.set_micros(T0 + 30 * S);
    for expected in (0..10).rev() {
        let d = decide(&store, "p:w", &q, 1).await;
        assert!(d.allowed);
        assert_eq!(d.remaining, expected);
        assert_eq!(
            d.reset_after_us,
            90 * S,
            "full again at the end of the next window"
        );
    }
    let d = decide(&store, "p:w", &q, 1).await;
    assert!(!d.allowed);
    // The previous window (10) must weigh at most 9: 6 s into the next window.
    assert_eq!(d.retry_after_us, Some(36 * S));
    clock.set_micros(T0 + 66 * S);
    let d = decide(&store, "p:w", &q, 1).await;
    assert!(d.allowed);
    assert_eq!(d.remaining, 0);
    clock.set_micros(T0 + 90 * S);
    let d = decide(&store, "p:w", &q, 1).await;
    assert!(d.allowed, "half the previous window (5) + 1 now");
    assert_eq!(d.remaining, 3);
}

async fn costs_spend_several_units<St: RateLimitStore>(store: St, _clock: ManualClock) {
    let q = Quota::per_minute(10);
    let d = decide(&store, "p:c", &q, 4).await;
    assert_eq!((d.allowed, d.remaining, d.used()), (true, 6, 4));
    let d = decide(&store, "p:c", &q, 7).await;
    assert!(!d.allowed);
    assert_eq!(
        d.remaining, 0,
        "a refusal reports nothing usable (SEMANTICS: remaining 0)"
    );
    // ... yet it spent nothing: the six units left still pass.
    let d = decide(&store, "p:c", &q, 6).await;
    assert_eq!((d.allowed, d.remaining), (true, 0));
}

async fn callers_and_buckets_are_independent<St: RateLimitStore>(store: St, _clock: ManualClock) {
    let q = Quota::per_minute(1);
    assert!(decide(&store, "p:x", &q, 1).await.allowed);
    assert!(!decide(&store, "p:x", &q, 1).await.allowed);
    assert!(decide(&store, "p:y", &q, 1).await.allowed);
    let route = BucketKey {
        caller: "p:x",
        bucket: "POST /bookings",
        overridable: false,
    };
    assert!(store.decide(route, &q, 1).await.unwrap().allowed);
}

async fn overrides_replace_the_tier_quota<St: RateLimitStore>(store: St, _clock: ManualClock) {
    let tier = Quota::per_minute(2);
    let negotiated = Quota::per_minute(100);
    store.set_override("p:big", Some(negotiated)).await.unwrap();
    let d = decide(&store, "p:big", &tier, 1).await;
    assert_eq!((d.quota, d.remaining), (negotiated, 99));
    // Route buckets keep their own quota.
    let route = BucketKey {
        caller: "p:big",
        bucket: "booking",
        overridable: false,
    };
    let d = store.decide(route, &tier, 1).await.unwrap();
    assert_eq!((d.quota, d.remaining), (tier, 1));
    store.set_override("p:big", None).await.unwrap();
    let d = decide(&store, "p:big", &tier, 1).await;
    // GCRA state is a time: the 0.6 s the override spent leaves one tier unit (30 s) short.
    assert_eq!((d.quota, d.allowed, d.remaining), (tier, true, 0));
}

/// 200 concurrent decisions against a quota of 50 admit exactly 50.
async fn concurrent_callers_get_exactly_the_quota<St: RateLimitStore>(
    store: St,
    _clock: ManualClock,
) {
    let q = Quota::per_hour(50);
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { decide(&store, "p:race", &q, 1).await.allowed })
        })
        .collect();
    let mut admitted = 0;
    for task in tasks {
        admitted += u32::from(task.await.unwrap());
    }
    assert_eq!(admitted, 50);
}

/// A pseudo-random walk of times, costs, quotas, algorithms and overrides over a few callers: the
/// answers are recorded so the two backends can be compared decision by decision. The same caller
/// meets both algorithms and several window lengths, and overrides come and go.
async fn random_walk<St: RateLimitStore>(
    store: St,
    clock: ManualClock,
    mut seed: u64,
) -> Vec<Decision> {
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let quotas = [
        Quota::new(7, Duration::from_secs(3)).with_burst(3),
        Quota::per_second(20),
        Quota::per_minute(9).with_algorithm(Algorithm::SlidingWindow),
        Quota::new(4, Duration::from_millis(1500)).with_algorithm(Algorithm::SlidingWindow),
        Quota::new(3, Duration::from_millis(1000)).with_algorithm(Algorithm::SlidingWindow),
    ];
    let mut out = Vec::new();
    for _ in 0..600 {
        clock.advance(Duration::from_micros(next() % 150_000));
        let caller = format!("p:{}", next() % 3);
        if next() % 10 == 0 {
            let quota = (next() % 2 == 0).then(|| quotas[(next() % 5) as usize]);
            store.set_override(&caller, quota).await.expect("override");
        }
        let q = quotas[(next() % 5) as usize];
        let key = BucketKey {
            caller: &caller,
            bucket: if next() % 3 == 0 {
                "r:route"
            } else {
                "default"
            },
            overridable: true,
        };
        let cost = (next() % 4) as u32;
        out.push(store.decide(key, &q, cost).await.expect("store answers"));
    }
    out
}

// ---- backends --------------------------------------------------------------------------------

fn memory(clock: &ManualClock) -> MemoryRateLimitStore {
    MemoryRateLimitStore::new(&common::memory_backend(clock))
}

fn redis(backend: &api_policy::backend::RedisBackend) -> RedisRateLimitStore {
    RedisRateLimitStore::new(backend)
}

on_both_backends!(
    gcra_reference_vectors,
    window_boundary_burst_is_refused,
    sliding_window_weights_the_previous_window,
    costs_spend_several_units,
    callers_and_buckets_are_independent,
    overrides_replace_the_tier_quota,
    concurrent_callers_get_exactly_the_quota,
);

#[tokio::test]
async fn both_backends_give_identical_answers_on_a_random_walk() {
    let Some(url) = common::redis_or_skip("random_walk").await else {
        return;
    };
    for seed in [
        0x9E37_79B9_7F4A_7C15,
        0x2545_F491_4F6C_DD1D,
        0xD1B5_4A32_D192_ED03,
        42,
    ] {
        let clock = ManualClock::at_micros(T0);
        let from_memory = random_walk(memory(&clock), clock.clone(), seed).await;
        let clock = ManualClock::at_micros(T0);
        let backend = RedisBackend::builder(url.clone())
            .prefix(common::unique_prefix("random_walk"))
            .clock(clock.clone())
            .build()
            .unwrap();
        let from_redis = random_walk(RedisRateLimitStore::new(&backend), clock, seed).await;
        let refused = from_memory.iter().filter(|d| !d.allowed).count();
        assert!(
            refused > 60 && refused < 540,
            "seed {seed:#x}: the walk should mix answers: {refused} refused"
        );
        for (i, (m, r)) in from_memory.iter().zip(&from_redis).enumerate() {
            assert_eq!(m, r, "seed {seed:#x}: decision {i} differs");
        }
    }
}

#[tokio::test]
async fn redis_bucket_keys_expire_when_full_again() {
    let Some(url) = common::redis_or_skip("ttl").await else {
        return;
    };
    let prefix = common::unique_prefix("ttl");
    let backend = RedisBackend::builder(url.clone())
        .prefix(prefix.clone())
        .build()
        .unwrap();
    let store = RedisRateLimitStore::new(&backend);
    decide(&store, "p:ttl", &Quota::per_minute(10), 3).await;
    let mut raw = common::raw_connection(&url).await;
    let pttl: i64 = redis::cmd("PTTL")
        .arg(format!("{prefix}rl:{{p:ttl}}:default"))
        .query_async(&mut raw)
        .await
        .unwrap();
    // Three units of 6 s each come back in 18 s.
    assert!((17_000..=18_001).contains(&pttl), "pttl {pttl}");
}

#[tokio::test]
async fn redis_decides_by_the_server_clock_by_default() {
    let Some(url) = common::redis_or_skip("server_clock").await else {
        return;
    };
    let backend = RedisBackend::builder(url.clone())
        .prefix(common::unique_prefix("server_clock"))
        .build()
        .unwrap();
    let store = RedisRateLimitStore::new(&backend);
    let d = decide(&store, "p:clock", &Quota::per_minute(10), 1).await;
    let mut raw = common::raw_connection(&url).await;
    let (secs, micros): (u64, u64) = redis::cmd("TIME").query_async(&mut raw).await.unwrap();
    let server_now = secs * S + micros;
    assert!(
        server_now >= d.now_us && server_now - d.now_us < 5 * S,
        "decision time {} vs server {server_now}",
        d.now_us
    );
}

/// One decision is one round trip: N decisions run N EVALSHA and nothing else. On a Redis of the
/// test's own, so no other test's commands are counted.
#[tokio::test]
async fn one_redis_round_trip_per_decision() {
    if common::redis_or_skip("round_trips").await.is_none() {
        return;
    }
    let port = common::free_port();
    let Some(_redis) = common::RedisProcess::start(port).await else {
        return;
    };
    let url = format!("redis://127.0.0.1:{port}");
    let backend = RedisBackend::builder(url.clone()).build().unwrap();
    let store = RedisRateLimitStore::new(&backend);
    // Connect and load the script first.
    decide(&store, "p:warm", &Quota::per_minute(10), 1).await;
    let mut raw = common::raw_connection(&url).await;
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async(&mut raw)
        .await
        .unwrap();
    const N: u64 = 1000;
    for i in 0..N {
        let key = BucketKey {
            caller: &format!("p:rt{}", i % 50),
            bucket: if i % 2 == 0 { "default" } else { "booking" },
            overridable: i % 2 == 0,
        };
        store.decide(key, &Quota::per_minute(10), 1).await.unwrap();
    }
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut raw)
        .await
        .unwrap();
    let mut counted = Vec::new();
    for line in info.lines().filter(|l| l.starts_with("cmdstat_")) {
        let name = line
            .trim_start_matches("cmdstat_")
            .split(':')
            .next()
            .unwrap_or("");
        let calls: u64 = line
            .split("calls=")
            .nth(1)
            .and_then(|v| v.split(',').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        counted.push((name.to_string(), calls));
    }
    let calls = |name: &str| counted.iter().find(|(n, _)| n == name).map_or(0, |c| c.1);
    // Commandstats also counts what the script calls inside Redis (TIME, GET, SET): those are no
    // round trips. Everything the client sent is the N EVALSHA.
    let client_sent: Vec<_> = counted
        .iter()
        .filter(|(name, _)| {
            !matches!(
                name.as_str(),
                "evalsha" | "info" | "config|resetstat" | "time" | "get" | "set"
            )
        })
        .collect();
    assert_eq!(calls("evalsha"), N, "{info}");
    assert!(
        client_sent.is_empty(),
        "decisions sent more than EVALSHA: {client_sent:?}"
    );
    assert_eq!(calls("time"), N, "one server-clock read per decision");
    assert_eq!(
        calls("get"),
        N + N / 2,
        "the bucket, and the override for tier buckets"
    );
    assert_eq!(calls("set"), N / 2, "only admitted requests write");
}

/// OS threads released together by a barrier race on one slot: the compare-and-swap (GCRA) and the
/// slot lock (sliding window) still admit exactly the quota.
#[test]
fn memory_slots_hold_under_a_thread_race() {
    for algorithm in [Algorithm::Gcra, Algorithm::SlidingWindow] {
        let clock = ManualClock::at_micros(T0);
        let store = memory(&clock);
        let quota = Quota::per_hour(500).with_algorithm(algorithm);
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(8));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (store, barrier) = (store.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    (0..250)
                        .filter(|_| store.decide_now(key("p:race"), &quota, 1).allowed)
                        .count()
                })
            })
            .collect();
        let admitted: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(admitted, 500, "{algorithm:?}");
    }
}

// ---- token revocation ------------------------------------------------------------------------

/// One scenario for every revocation store. Times are Unix seconds of the real clock: the Redis
/// store expires entries by the server's clock (`EXAT`).
#[cfg(feature = "jwt")]
async fn revocation_scenario<R: api_policy::auth::RevocationStore>(store: R) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    store.revoke("jti-live", now + 3_600).await.unwrap();
    store.revoke("jti-past", now - 10).await.unwrap();
    store.revoke("jti-zero", 0).await.unwrap();
    assert!(store.is_revoked("jti-live").await.unwrap());
    assert!(!store.is_revoked("jti-other").await.unwrap());
    assert!(
        !store.is_revoked("jti-past").await.unwrap(),
        "a token already expired needs no entry"
    );
    assert!(!store.is_revoked("jti-zero").await.unwrap());
    // Revoking twice is harmless; a longer expiry wins.
    store.revoke("jti-live", now + 7_200).await.unwrap();
    assert!(store.is_revoked("jti-live").await.unwrap());
    // Ids are opaque strings: separators and Unicode are not special.
    store.revoke("a:b{c}:jti ü", now + 60).await.unwrap();
    assert!(store.is_revoked("a:b{c}:jti ü").await.unwrap());
    assert!(!store.is_revoked("a:b{c}:jti").await.unwrap());
}

#[cfg(feature = "jwt")]
#[tokio::test]
async fn memory_revocation_conformance() {
    revocation_scenario(api_policy::auth::MemoryRevocationStore::new(
        &MemoryBackend::new(),
    ))
    .await;
}

#[cfg(feature = "jwt")]
#[tokio::test]
async fn redis_revocation_conformance() {
    let Some(url) = common::redis_or_skip("redis_revocation_conformance").await else {
        return;
    };
    let backend = RedisBackend::builder(url)
        .prefix(common::unique_prefix("revocation"))
        .build()
        .unwrap();
    revocation_scenario(api_policy::auth::RedisRevocationStore::new(&backend)).await;
}

#[cfg(all(feature = "jwt", feature = "cluster"))]
#[tokio::test]
async fn redis_cluster_revocation_conformance() {
    let Some(urls) = common::redis_cluster_or_skip("redis_cluster_revocation_conformance").await
    else {
        return;
    };
    let backend = RedisBackend::cluster(urls)
        .prefix(common::unique_prefix("revocation"))
        .build()
        .unwrap();
    revocation_scenario(api_policy::auth::RedisRevocationStore::new(&backend)).await;
}

#[cfg(feature = "jwt")]
#[tokio::test]
async fn memory_revocations_end_at_the_tokens_expiry() {
    use api_policy::auth::{MemoryRevocationStore, RevocationStore};
    let clock = ManualClock::at_secs(1_800_000_000);
    let store = MemoryRevocationStore::new(
        &MemoryBackend::builder()
            .clock(clock.clone())
            .build()
            .unwrap(),
    );
    store.revoke("j", 1_800_000_010).await.unwrap();
    clock.advance(Duration::from_secs(9));
    assert!(store.is_revoked("j").await.unwrap());
    clock.advance(Duration::from_secs(1));
    assert!(!store.is_revoked("j").await.unwrap());
}

// ---- idempotency records ---------------------------------------------------------------------

mod idempotency {
    use std::time::Duration;

    use api_policy::backend::{MemoryBackend, RedisBackend};
    use api_policy::clock::ManualClock;
    use api_policy::idempotency::{
        Begin, Fingerprint, IdempotencyStore, MemoryIdempotencyStore, Outcome, OwnerToken,
        RecordKey, RedisIdempotencyStore, StoredResponse, Terms,
    };
    use bytes::Bytes;
    use http::{HeaderMap, HeaderValue, StatusCode};

    use super::{T0, common};

    const TERMS: Terms = Terms {
        lease: Duration::from_secs(60),
        retention: Duration::from_secs(24 * 3600),
    };

    fn key(k: &str) -> RecordKey<'_> {
        RecordKey {
            scope: "u:pat_1",
            key: k,
        }
    }

    fn fp(body: &str) -> Fingerprint {
        Fingerprint::of_request(
            &http::Method::POST,
            &"/api/v2/appointments".parse().unwrap(),
            body.as_bytes(),
        )
    }

    fn created(body: &'static str) -> Outcome {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        headers.insert(
            "location",
            HeaderValue::from_static("/api/v2/appointments/1"),
        );
        Outcome::Response(StoredResponse::new(
            StatusCode::CREATED,
            &headers,
            Bytes::from_static(body.as_bytes()),
        ))
    }

    async fn begin<St: IdempotencyStore>(store: &St, k: &str, body: &str) -> Begin {
        store
            .begin(key(k), &fp(body), &TERMS)
            .await
            .expect("store answers")
    }

    async fn started<St: IdempotencyStore>(store: &St, k: &str, body: &str) -> (OwnerToken, u32) {
        match begin(store, k, body).await {
            Begin::Started { owner, attempt } => (owner, attempt),
            other => panic!("{k}: expected Started, got {other:?}"),
        }
    }

    /// SEMANTICS.md idempotency items 4, 6 and 7: lock, replay, in flight, mismatch.
    pub(super) async fn lock_complete_replay<St: IdempotencyStore>(store: St, clock: ManualClock) {
        let (owner, attempt) = started(&store, "k1", "{}").await;
        assert_eq!(attempt, 1);
        match begin(&store, "k1", "{}").await {
            Begin::InFlight { lease_left } => assert_eq!(lease_left, TERMS.lease),
            other => panic!("expected InFlight, got {other:?}"),
        }
        assert_eq!(begin(&store, "k1", "{\"x\":1}").await, Begin::Mismatch);
        clock.advance(Duration::from_secs(5));
        let outcome = created("{\"id\":1}");
        assert!(
            store
                .complete(key("k1"), &owner, &outcome, &TERMS)
                .await
                .unwrap()
        );
        assert_eq!(
            begin(&store, "k1", "{}").await,
            Begin::Finished(outcome.clone())
        );
        assert_eq!(begin(&store, "k1", "{\"x\":1}").await, Begin::Mismatch);
        // A second completion by the same owner finds no lock.
        assert!(
            !store
                .complete(key("k1"), &owner, &outcome, &TERMS)
                .await
                .unwrap()
        );
        let not_kept = Outcome::NotKept {
            status: StatusCode::OK,
        };
        let (owner, _) = started(&store, "k2", "{}").await;
        assert!(
            store
                .complete(key("k2"), &owner, &not_kept, &TERMS)
                .await
                .unwrap()
        );
        assert_eq!(begin(&store, "k2", "{}").await, Begin::Finished(not_kept));
    }

    /// Item 8: scopes are separate records.
    pub(super) async fn scopes_are_separate<St: IdempotencyStore>(store: St, _clock: ManualClock) {
        let (owner, _) = started(&store, "shared", "a").await;
        store
            .complete(key("shared"), &owner, &created("a"), &TERMS)
            .await
            .unwrap();
        let other = RecordKey {
            scope: "u:pat_2",
            key: "shared",
        };
        assert!(matches!(
            store.begin(other, &fp("b"), &TERMS).await.unwrap(),
            Begin::Started { attempt: 1, .. }
        ));
        // Keys and scopes are opaque: braces, spaces and colons are not special.
        let odd = RecordKey {
            scope: "u:a}b{c d",
            key: "x} {y:z",
        };
        assert!(matches!(
            store.begin(odd, &fp("a"), &TERMS).await.unwrap(),
            Begin::Started { .. }
        ));
        assert!(matches!(
            store.begin(odd, &fp("a"), &TERMS).await.unwrap(),
            Begin::InFlight { .. }
        ));
    }

    /// Items 10 and 11: retention by the stored time; a lease that ends lets a retry take over,
    /// which counts as a later attempt, and the old owner can no longer complete.
    pub(super) async fn retention_and_leases<St: IdempotencyStore>(store: St, clock: ManualClock) {
        let (owner, _) = started(&store, "r", "{}").await;
        store
            .complete(key("r"), &owner, &created("1"), &TERMS)
            .await
            .unwrap();
        clock.advance(TERMS.retention - Duration::from_secs(1));
        assert!(matches!(begin(&store, "r", "{}").await, Begin::Finished(_)));
        clock.advance(Duration::from_secs(1));
        assert_eq!(
            started(&store, "r", "other body").await.1,
            1,
            "a new request after retention"
        );

        let (crashed, _) = started(&store, "l", "{}").await;
        clock.advance(TERMS.lease - Duration::from_secs(1));
        assert!(matches!(
            begin(&store, "l", "{}").await,
            Begin::InFlight { .. }
        ));
        clock.advance(Duration::from_secs(1));
        let (owner, attempt) = started(&store, "l", "{}").await;
        assert_eq!(attempt, 2);
        assert!(
            !store
                .complete(key("l"), &crashed, &created("late"), &TERMS)
                .await
                .unwrap(),
            "the crashed owner lost its lock"
        );
        assert!(!store.release(key("l"), &crashed, &TERMS).await.unwrap());
        assert!(
            store
                .complete(key("l"), &owner, &created("2"), &TERMS)
                .await
                .unwrap()
        );
        assert_eq!(
            begin(&store, "l", "{}").await,
            Begin::Finished(created("2"))
        );
    }

    /// Items 5 and 11: a released lock frees the key at once, and the next attempt knows it is
    /// not the first; a different fingerprint may then run.
    pub(super) async fn release_frees_the_key<St: IdempotencyStore>(
        store: St,
        _clock: ManualClock,
    ) {
        let (owner, _) = started(&store, "c", "{}").await;
        assert!(store.release(key("c"), &owner, &TERMS).await.unwrap());
        let (owner, attempt) = started(&store, "c", "{}").await;
        assert_eq!(attempt, 2);
        assert!(store.release(key("c"), &owner, &TERMS).await.unwrap());
        assert_eq!(started(&store, "c", "changed").await.1, 3);
    }

    /// Many begins at once: exactly one starts.
    pub(super) async fn concurrent_begins_start_once<St: IdempotencyStore>(
        store: St,
        _clock: ManualClock,
    ) {
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move { begin(&store, "race", "{}").await })
            })
            .collect();
        let mut started = 0;
        for task in tasks {
            match task.await.unwrap() {
                Begin::Started { .. } => started += 1,
                Begin::InFlight { .. } => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(started, 1);
    }

    fn memory(clock: &ManualClock) -> MemoryIdempotencyStore {
        MemoryIdempotencyStore::new(&common::memory_backend(clock))
    }

    fn redis(backend: &api_policy::backend::RedisBackend) -> RedisIdempotencyStore {
        RedisIdempotencyStore::new(backend)
    }

    on_both_backends!(
        lock_complete_replay,
        scopes_are_separate,
        retention_and_leases,
        release_frees_the_key,
        concurrent_begins_start_once,
    );

    /// A full memory store evicts finished records, never the lock of a request still running:
    /// its retry would run the handler a second time.
    #[tokio::test]
    async fn memory_never_evicts_a_live_lock() {
        let clock = ManualClock::at_micros(T0);
        let store = MemoryIdempotencyStore::new(
            &MemoryBackend::builder()
                .max_keys(64)
                .clock(clock.clone())
                .build()
                .unwrap(),
        );
        let (_running, _) = started(&store, "live", "{}").await;
        for i in 0..5_000 {
            let k = format!("done-{i}");
            let (owner, _) = started(&store, &k, "{}").await;
            store
                .complete(key(&k), &owner, &created("x"), &TERMS)
                .await
                .unwrap();
        }
        assert!(store.len() <= 64 + 1, "the bound holds: {}", store.len());
        assert!(
            matches!(begin(&store, "live", "{}").await, Begin::InFlight { .. }),
            "the live lock survived the spray"
        );
    }

    /// Every key the Redis store writes has a TTL.
    #[tokio::test]
    async fn redis_record_keys_expire() {
        let Some(url) = common::redis_or_skip("redis_record_keys_expire").await else {
            return;
        };
        let prefix = common::unique_prefix("idem_ttl");
        let backend = RedisBackend::builder(url.clone())
            .prefix(prefix.clone())
            .build()
            .unwrap();
        let store = RedisIdempotencyStore::new(&backend);
        let Begin::Started { owner, .. } = store.begin(key("t"), &fp(""), &TERMS).await.unwrap()
        else {
            panic!("not started")
        };
        let mut redis = common::raw_connection(&url).await;
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{prefix}*"))
            .query_async(&mut redis)
            .await
            .unwrap();
        assert_eq!(keys.len(), 1, "{keys:?}");
        let ttl: i64 = redis::cmd("PTTL")
            .arg(&keys[0])
            .query_async(&mut redis)
            .await
            .unwrap();
        assert!(ttl > 60_000 && ttl <= 120_000, "lock TTL {ttl} ms");
        store
            .complete(key("t"), &owner, &created("x"), &TERMS)
            .await
            .unwrap();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{prefix}*"))
            .query_async(&mut redis)
            .await
            .unwrap();
        assert_eq!(
            keys.len(),
            1,
            "the lock is gone, the record stays: {keys:?}"
        );
        assert!(keys[0].ends_with(":done"));
        let ttl: i64 = redis::cmd("PTTL")
            .arg(&keys[0])
            .query_async(&mut redis)
            .await
            .unwrap();
        assert!(
            ttl > 23 * 3_600_000 && ttl <= 24 * 3_600_000,
            "record TTL {ttl} ms"
        );
    }
}

// ---- conditional-request validators ------------------------------------------------------------

mod validators {
    use std::time::{Duration, UNIX_EPOCH};

    use api_policy::clock::ManualClock;
    use api_policy::conditional::{
        EntityTag, Locked, MemoryValidatorStore, RedisValidatorStore, Snapshot, StoredValidators,
        Update, ValidatorStore,
    };
    use api_policy::idempotency::OwnerToken;

    use super::{T0, common};

    const TTL: Duration = Duration::from_secs(3600);
    const LEASE: Duration = Duration::from_secs(30);
    const R: &str = "/api/v2/appointments/{id} id=apt_1";

    fn v(tag: &str, secs: Option<u64>) -> StoredValidators {
        StoredValidators {
            etag: Some(EntityTag::strong(tag).unwrap()),
            last_modified: secs.map(|s| UNIX_EPOCH + Duration::from_secs(s)),
        }
    }

    async fn held<St: ValidatorStore>(store: &St, owner: &OwnerToken) -> Option<StoredValidators> {
        match store.lock(R, owner, LEASE).await.unwrap() {
            Locked::Held { current } => current,
            other => panic!("expected Held, got {other:?}"),
        }
    }

    async fn known<St: ValidatorStore>(store: &St, resource: &str) -> Option<StoredValidators> {
        store.get(resource).await.unwrap().validators
    }

    /// Learn, lock, update under the lock, compare-and-set on the owner.
    pub(super) async fn learn_lock_update<St: ValidatorStore>(store: St, _clock: ManualClock) {
        assert_eq!(store.get(R).await.unwrap(), Snapshot::default());
        assert!(
            store
                .learn(R, &v("v1", Some(1_700_000_000)), 0, TTL)
                .await
                .unwrap()
        );
        assert_eq!(known(&store, R).await, Some(v("v1", Some(1_700_000_000))));
        let (a, b) = (OwnerToken::new(), OwnerToken::new());
        assert_eq!(held(&store, &a).await, Some(v("v1", Some(1_700_000_000))));
        assert!(matches!(
            store.lock(R, &b, LEASE).await.unwrap(),
            Locked::Busy { lease_left, current }
                if lease_left == LEASE && current == Some(v("v1", Some(1_700_000_000)))
        ));
        // A response learned meanwhile does not overwrite what the update will decide.
        assert!(!store.learn(R, &v("stale", None), 0, TTL).await.unwrap());
        assert!(
            !store.unlock(R, &b, &Update::Forget, TTL).await.unwrap(),
            "not b's lock"
        );
        assert!(
            store
                .unlock(R, &a, &Update::Set(v("v2", None)), TTL)
                .await
                .unwrap()
        );
        assert_eq!(
            store.get(R).await.unwrap(),
            Snapshot {
                validators: Some(v("v2", None)),
                generation: 1
            }
        );
        assert_eq!(held(&store, &b).await, Some(v("v2", None)));
        assert!(store.unlock(R, &b, &Update::Forget, TTL).await.unwrap());
        assert_eq!(
            store.get(R).await.unwrap(),
            Snapshot {
                validators: None,
                generation: 2
            }
        );
        let c = OwnerToken::new();
        assert_eq!(held(&store, &c).await, None);
        assert!(store.unlock(R, &c, &Update::Keep, TTL).await.unwrap());
        assert!(
            !store.unlock(R, &c, &Update::Keep, TTL).await.unwrap(),
            "already unlocked"
        );
        assert_eq!(
            store.get(R).await.unwrap().generation,
            2,
            "Keep changes nothing"
        );
        // A weak tag and no date survive the round trip.
        let weak = StoredValidators {
            etag: Some(EntityTag::weak("w1").unwrap()),
            last_modified: None,
        };
        assert!(store.learn("other", &weak, 0, TTL).await.unwrap());
        assert_eq!(known(&store, "other").await, Some(weak));
    }

    /// A read that began before an update ended cannot bring back the validators the update
    /// replaced: its generation is stale.
    pub(super) async fn slow_reads_cannot_restore_old_validators<St: ValidatorStore>(
        store: St,
        _clock: ManualClock,
    ) {
        assert!(store.learn(R, &v("v1", None), 0, TTL).await.unwrap());
        let read_began = store.get(R).await.unwrap();
        let writer = OwnerToken::new();
        held(&store, &writer).await;
        assert!(
            store
                .unlock(R, &writer, &Update::Set(v("v2", None)), TTL)
                .await
                .unwrap()
        );
        assert!(
            !store
                .learn(R, &v("v1", None), read_began.generation, TTL)
                .await
                .unwrap(),
            "the slow read's answer is refused"
        );
        assert_eq!(known(&store, R).await, Some(v("v2", None)));
        // The same after a DELETE (forget): no validators, yet the old ones stay out.
        let read_began = store.get(R).await.unwrap();
        held(&store, &writer).await;
        assert!(
            store
                .unlock(R, &writer, &Update::Forget, TTL)
                .await
                .unwrap()
        );
        assert!(
            !store
                .learn(R, &v("v2", None), read_began.generation, TTL)
                .await
                .unwrap()
        );
        assert_eq!(known(&store, R).await, None);
    }

    /// A lock whose lease ended is taken over.
    pub(super) async fn leases_and_ttls_end<St: ValidatorStore>(store: St, clock: ManualClock) {
        let (a, b) = (OwnerToken::new(), OwnerToken::new());
        held(&store, &a).await;
        clock.advance(LEASE);
        held(&store, &b).await;
        assert!(!store.unlock(R, &a, &Update::Keep, TTL).await.unwrap());
        assert!(store.unlock(R, &b, &Update::Keep, TTL).await.unwrap());
    }

    /// Many updates at once: exactly one holds the lock.
    pub(super) async fn concurrent_locks_hold_once<St: ValidatorStore>(
        store: St,
        _clock: ManualClock,
    ) {
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move { store.lock(R, &OwnerToken::new(), LEASE).await.unwrap() })
            })
            .collect();
        let mut holders = 0;
        for task in tasks {
            holders += usize::from(matches!(task.await.unwrap(), Locked::Held { .. }));
        }
        assert_eq!(holders, 1);
    }

    fn memory(clock: &ManualClock) -> MemoryValidatorStore {
        MemoryValidatorStore::new(&common::memory_backend(clock))
    }

    fn redis(backend: &api_policy::backend::RedisBackend) -> RedisValidatorStore {
        RedisValidatorStore::new(backend)
    }

    on_both_backends!(
        learn_lock_update,
        slow_reads_cannot_restore_old_validators,
        leases_and_ttls_end,
        concurrent_locks_hold_once,
    );
}

// ---- version pins and usage ------------------------------------------------------------------

mod version_pins {
    use api_policy::clock::ManualClock;
    use api_policy::versioning::{
        ApiVersion, MemoryVersionPinStore, RedisVersionPinStore, VersionPinStore,
    };

    use super::T0;

    fn v(text: &str) -> ApiVersion {
        ApiVersion::parse(text).unwrap()
    }

    /// Pins: none, pinned on first use and kept, moved, removed.
    pub(super) async fn pins<St: VersionPinStore>(store: St, _clock: ManualClock) {
        assert_eq!(store.pinned("u:a").await.unwrap(), None);
        assert_eq!(store.pin_if_absent("u:a", v("v1")).await.unwrap(), v("v1"));
        assert_eq!(
            store.pin_if_absent("u:a", v("v2")).await.unwrap(),
            v("v1"),
            "kept"
        );
        store.set_pin("u:a", Some(v("2024-04-10"))).await.unwrap();
        assert_eq!(store.pinned("u:a").await.unwrap(), Some(v("2024-04-10")));
        store.set_pin("u:a", None).await.unwrap();
        assert_eq!(store.pinned("u:a").await.unwrap(), None);
        assert_eq!(store.pinned("u:b").await.unwrap(), None, "callers apart");
    }

    /// Usage: summed over the asked days only, most calls first, with the last day seen.
    pub(super) async fn usage<St: VersionPinStore>(store: St, _clock: ManualClock) {
        let day = 20_416; // 2025-11-24
        for (caller, d, n) in [
            ("u:a", day, 2),
            ("u:b", day, 1),
            ("u:b", day + 1, 3),
            ("u:c", day + 5, 1),
        ] {
            for _ in 0..n {
                store.record_call(v("v1"), caller, d).await.unwrap();
            }
        }
        store.record_call(v("v2"), "u:a", day).await.unwrap();
        let report: Vec<(String, u64, String)> = store
            .usage(v("v1"), day, day + 1)
            .await
            .unwrap()
            .into_iter()
            .map(|u| (u.caller, u.calls, u.last_seen))
            .collect();
        assert_eq!(
            report,
            [
                ("u:b".to_string(), 4, "2025-11-25".to_string()),
                ("u:a".to_string(), 2, "2025-11-24".to_string()),
            ]
        );
        assert_eq!(store.usage(v("v2"), day, day).await.unwrap().len(), 1);
        assert!(
            store
                .usage(v("v1"), day + 2, day + 4)
                .await
                .unwrap()
                .is_empty()
        );
    }

    fn memory(_clock: &ManualClock) -> MemoryVersionPinStore {
        MemoryVersionPinStore::new(&Default::default())
    }

    fn redis(backend: &api_policy::backend::RedisBackend) -> RedisVersionPinStore {
        RedisVersionPinStore::new(backend)
    }

    on_both_backends!(pins, usage);
}
