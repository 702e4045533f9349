use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

fn probe(c: &mut Criterion) {
    let keys: Vec<String> = (0..10_000).map(|i| format!("user:{i}")).collect();
    let gov = governor::RateLimiter::keyed(governor::Quota::per_second(NonZeroU32::new(1_000_000).unwrap()));
    let mut i = 0usize;
    c.bench_function("governor_keyed_10k", |b| b.iter(|| { i = (i + 1) % keys.len(); black_box(gov.check_key(&keys[i]).is_ok()) }));
    let cache = moka::sync::Cache::builder().max_capacity(100_000).build_with_hasher(foldhash::fast::RandomState::default());
    for k in &keys { cache.insert(Box::<str>::from(k.as_str()), Arc::new(AtomicU64::new(0))); }
    c.bench_function("moka_fold_get_10k", |b| b.iter(|| { i = (i + 1) % keys.len(); let s = cache.get(keys[i].as_str()).unwrap(); black_box(s.fetch_add(1, Ordering::AcqRel)) }));
    let cache = moka::sync::Cache::builder().max_capacity(100_000).eviction_policy(moka::policy::EvictionPolicy::lru()).build_with_hasher(foldhash::fast::RandomState::default());
    for k in &keys { cache.insert(Box::<str>::from(k.as_str()), Arc::new(AtomicU64::new(0))); }
    c.bench_function("moka_fold_lru_get_10k", |b| b.iter(|| { i = (i + 1) % keys.len(); let s = cache.get(keys[i].as_str()).unwrap(); black_box(s.fetch_add(1, Ordering::AcqRel)) }));
    let cache = moka::sync::Cache::builder().max_capacity(100_000).build_with_hasher(foldhash::fast::RandomState::default());
    for k in &keys { cache.insert(Box::<str>::from(k.as_str()), Arc::new(AtomicU64::new(0))); }
    c.bench_function("moka_fold_contains_10k", |b| b.iter(|| { i = (i + 1) % keys.len(); black_box(cache.contains_key(keys[i].as_str())) }));
}
criterion_group!(benches, probe);
criterion_main!(benches);
