//! [`AnyBackend`]: the backend a configuration's `[backend]` section names, chosen when the
//! configuration is read, so an app builds its stack without matching on the kind itself. Its
//! stores pass each call to the chosen backend's store.

use std::time::Duration;

use super::backend::StackBackend;
use super::config::{BackendConfig, BackendKind};
use crate::conditional::{Locked, Snapshot, StoredValidators, Update, ValidatorStore};
use crate::error::{ConfigError, StoreError};
use crate::idempotency::{Begin, Fingerprint, IdempotencyStore, Outcome, RecordKey, Terms};
use crate::owner::OwnerToken;
use crate::rate_limit::{BucketKey, Decision, Quota, RateLimitStore};
use crate::versioning::{ApiVersion, Usage, VersionPinStore};

/// Runs `$call` on the store of whichever backend `$value` holds.
macro_rules! on_backend {
    ($value:expr, $store:ident => $call:expr) => {
        match $value {
            #[cfg(feature = "memory")]
            Self::Memory($store) => $call,
            #[cfg(feature = "redis")]
            Self::Redis($store) => $call,
        }
    };
}

/// A store of each backend, chosen at run time.
macro_rules! any_store {
    ($(#[$doc:meta])* $name:ident: $memory:ty, $redis:ty) => {
        $(#[$doc])*
        #[derive(Debug, Clone)]
        #[non_exhaustive]
        pub enum $name {
            /// In this process.
            #[cfg(feature = "memory")]
            Memory($memory),
            /// In Redis.
            #[cfg(feature = "redis")]
            Redis($redis),
        }
    };
}

/// The backend a `[backend]` section names: [`BackendConfig::build`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum AnyBackend {
    /// In this process.
    #[cfg(feature = "memory")]
    Memory(crate::backend::MemoryBackend),
    /// A fleet's shared Redis.
    #[cfg(feature = "redis")]
    Redis(crate::backend::RedisBackend),
}

impl BackendConfig {
    /// The backend this section names, connected: what
    /// [`StackConfig::build`](super::StackConfig::build) takes, whatever the kind.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the entry: a kind this build has no feature for, a Redis URL
    /// that does not parse.
    pub fn build(&self) -> Result<AnyBackend, ConfigError> {
        match self.kind {
            #[cfg(feature = "redis")]
            BackendKind::Redis => self.redis().map(AnyBackend::Redis),
            #[cfg(not(feature = "redis"))]
            BackendKind::Redis => Err(ConfigError::new(
                "backend.kind",
                "a Redis backend needs the `redis` feature",
            )),
            #[cfg(feature = "memory")]
            _ => self.memory().map(AnyBackend::Memory),
            #[cfg(not(feature = "memory"))]
            _ => Err(ConfigError::new(
                "backend.kind",
                "a memory backend needs the `memory` feature",
            )),
        }
    }
}

impl AnyBackend {
    /// The backend's name: `memory`, `redis`.
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            #[cfg(feature = "memory")]
            Self::Memory(_) => "memory",
            #[cfg(feature = "redis")]
            Self::Redis(_) => "redis",
        }
    }
}

any_store! {
    /// The rate limiter's store on an [`AnyBackend`].
    AnyRateLimitStore: crate::rate_limit::MemoryRateLimitStore, crate::rate_limit::RedisRateLimitStore
}
any_store! {
    /// The idempotency (and webhook) store on an [`AnyBackend`].
    AnyIdempotencyStore: crate::idempotency::MemoryIdempotencyStore, crate::idempotency::RedisIdempotencyStore
}
any_store! {
    /// The version-pin store on an [`AnyBackend`].
    AnyVersionPinStore: crate::versioning::MemoryVersionPinStore, crate::versioning::RedisVersionPinStore
}
any_store! {
    /// The validator store on an [`AnyBackend`].
    AnyValidatorStore: crate::conditional::MemoryValidatorStore, crate::conditional::RedisValidatorStore
}

impl StackBackend for AnyBackend {
    type RateLimit = AnyRateLimitStore;
    type Idempotency = AnyIdempotencyStore;
    type VersionPins = AnyVersionPinStore;
    type Validators = AnyValidatorStore;

    fn rate_limit_store(&self) -> Self::RateLimit {
        on_backend!(self, b => AnyRateLimitStore::from(b.rate_limit_store()))
    }
    fn idempotency_store(&self) -> Self::Idempotency {
        on_backend!(self, b => AnyIdempotencyStore::from(b.idempotency_store()))
    }
    fn version_pin_store(&self) -> Self::VersionPins {
        on_backend!(self, b => AnyVersionPinStore::from(b.version_pin_store()))
    }
    fn validator_store(&self) -> Self::Validators {
        on_backend!(self, b => AnyValidatorStore::from(b.validator_store()))
    }
}

/// `From` each backend's store into its `Any` store.
macro_rules! from_stores {
    ($any:ident: $memory:ty, $redis:ty) => {
        #[cfg(feature = "memory")]
        impl From<$memory> for $any {
            fn from(store: $memory) -> Self {
                Self::Memory(store)
            }
        }
        #[cfg(feature = "redis")]
        impl From<$redis> for $any {
            fn from(store: $redis) -> Self {
                Self::Redis(store)
            }
        }
    };
}

from_stores!(AnyRateLimitStore: crate::rate_limit::MemoryRateLimitStore, crate::rate_limit::RedisRateLimitStore);
from_stores!(AnyIdempotencyStore: crate::idempotency::MemoryIdempotencyStore, crate::idempotency::RedisIdempotencyStore);
from_stores!(AnyVersionPinStore: crate::versioning::MemoryVersionPinStore, crate::versioning::RedisVersionPinStore);
from_stores!(AnyValidatorStore: crate::conditional::MemoryValidatorStore, crate::conditional::RedisValidatorStore);

impl RateLimitStore for AnyRateLimitStore {
    async fn decide(
        &self,
        key: BucketKey<'_>,
        quota: &Quota,
        cost: u32,
    ) -> Result<Decision, StoreError> {
        on_backend!(self, s => s.decide(key, quota, cost).await)
    }

    fn decide_immediately(
        &self,
        key: BucketKey<'_>,
        quota: &Quota,
        cost: u32,
    ) -> Option<Result<Decision, StoreError>> {
        on_backend!(self, s => s.decide_immediately(key, quota, cost))
    }

    async fn set_override(&self, caller: &str, quota: Option<Quota>) -> Result<(), StoreError> {
        on_backend!(self, s => s.set_override(caller, quota).await)
    }

    fn backend_name(&self) -> &'static str {
        on_backend!(self, s => s.backend_name())
    }
}

impl IdempotencyStore for AnyIdempotencyStore {
    async fn begin(
        &self,
        key: RecordKey<'_>,
        fingerprint: &Fingerprint,
        terms: &Terms,
    ) -> Result<Begin, StoreError> {
        on_backend!(self, s => s.begin(key, fingerprint, terms).await)
    }

    async fn complete(
        &self,
        key: RecordKey<'_>,
        owner: &OwnerToken,
        outcome: &Outcome,
        terms: &Terms,
    ) -> Result<bool, StoreError> {
        on_backend!(self, s => s.complete(key, owner, outcome, terms).await)
    }

    async fn release(
        &self,
        key: RecordKey<'_>,
        owner: &OwnerToken,
        terms: &Terms,
    ) -> Result<bool, StoreError> {
        on_backend!(self, s => s.release(key, owner, terms).await)
    }

    fn release_detached(&self, scope: String, key: String, owner: OwnerToken, terms: Terms) {
        on_backend!(self, s => s.release_detached(scope, key, owner, terms));
    }

    async fn until_unlocked(&self, key: RecordKey<'_>, patience: Duration) {
        on_backend!(self, s => s.until_unlocked(key, patience).await)
    }

    fn backend_name(&self) -> &'static str {
        on_backend!(self, s => s.backend_name())
    }
}

impl VersionPinStore for AnyVersionPinStore {
    async fn pinned(&self, caller: &str) -> Result<Option<ApiVersion>, StoreError> {
        on_backend!(self, s => s.pinned(caller).await)
    }

    async fn pin_if_absent(
        &self,
        caller: &str,
        version: ApiVersion,
    ) -> Result<ApiVersion, StoreError> {
        on_backend!(self, s => s.pin_if_absent(caller, version).await)
    }

    async fn set_pin(&self, caller: &str, version: Option<ApiVersion>) -> Result<(), StoreError> {
        on_backend!(self, s => s.set_pin(caller, version).await)
    }

    async fn record_call(
        &self,
        version: ApiVersion,
        caller: &str,
        day: u64,
    ) -> Result<(), StoreError> {
        on_backend!(self, s => s.record_call(version, caller, day).await)
    }

    fn record_call_detached(&self, version: ApiVersion, caller: String, day: u64) {
        on_backend!(self, s => s.record_call_detached(version, caller, day));
    }

    async fn usage(
        &self,
        version: ApiVersion,
        first: u64,
        last: u64,
    ) -> Result<Vec<Usage>, StoreError> {
        on_backend!(self, s => s.usage(version, first, last).await)
    }

    fn backend_name(&self) -> &'static str {
        on_backend!(self, s => s.backend_name())
    }
}

impl ValidatorStore for AnyValidatorStore {
    async fn get(&self, resource: &str) -> Result<Snapshot, StoreError> {
        on_backend!(self, s => s.get(resource).await)
    }

    fn get_immediately(&self, resource: &str) -> Option<Result<Snapshot, StoreError>> {
        on_backend!(self, s => s.get_immediately(resource))
    }

    async fn learn(
        &self,
        resource: &str,
        validators: &StoredValidators,
        seen: u64,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        on_backend!(self, s => s.learn(resource, validators, seen, ttl).await)
    }

    async fn lock(
        &self,
        resource: &str,
        owner: &OwnerToken,
        lease: Duration,
    ) -> Result<Locked, StoreError> {
        on_backend!(self, s => s.lock(resource, owner, lease).await)
    }

    async fn unlock(
        &self,
        resource: &str,
        owner: &OwnerToken,
        update: &Update,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        on_backend!(self, s => s.unlock(resource, owner, update, ttl).await)
    }

    async fn until_unlocked(&self, resource: &str, patience: Duration) {
        on_backend!(self, s => s.until_unlocked(resource, patience).await)
    }

    fn backend_name(&self) -> &'static str {
        on_backend!(self, s => s.backend_name())
    }
}
