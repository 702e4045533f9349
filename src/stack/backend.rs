//! [`StackBackend`]: a backend's store for each layer, so one configuration builds on either.

use crate::conditional::ValidatorStore;
use crate::idempotency::IdempotencyStore;
use crate::rate_limit::RateLimitStore;
use crate::versioning::VersionPinStore;

/// A backend that has a store for every layer of a [`PolicyStack`](super::PolicyStack):
/// [`MemoryBackend`](crate::backend::MemoryBackend) and
/// [`RedisBackend`](crate::backend::RedisBackend).
pub trait StackBackend {
    /// The rate limiter's store.
    type RateLimit: RateLimitStore;
    /// The idempotency layer's store (also the webhook layer's).
    type Idempotency: IdempotencyStore;
    /// The versioning layer's pin store.
    type VersionPins: VersionPinStore;
    /// The conditional layer's validator store.
    type Validators: ValidatorStore;

    /// A rate-limit store on this backend.
    fn rate_limit_store(&self) -> Self::RateLimit;
    /// An idempotency store on this backend.
    fn idempotency_store(&self) -> Self::Idempotency;
    /// A version-pin store on this backend.
    fn version_pin_store(&self) -> Self::VersionPins;
    /// A validator store on this backend.
    fn validator_store(&self) -> Self::Validators;
}

#[cfg(feature = "memory")]
impl StackBackend for crate::backend::MemoryBackend {
    type RateLimit = crate::rate_limit::MemoryRateLimitStore;
    type Idempotency = crate::idempotency::MemoryIdempotencyStore;
    type VersionPins = crate::versioning::MemoryVersionPinStore;
    type Validators = crate::conditional::MemoryValidatorStore;

    fn rate_limit_store(&self) -> Self::RateLimit {
        crate::rate_limit::MemoryRateLimitStore::new(self)
    }
    fn idempotency_store(&self) -> Self::Idempotency {
        crate::idempotency::MemoryIdempotencyStore::new(self)
    }
    fn version_pin_store(&self) -> Self::VersionPins {
        crate::versioning::MemoryVersionPinStore::new(self)
    }
    fn validator_store(&self) -> Self::Validators {
        crate::conditional::MemoryValidatorStore::new(self)
    }
}

#[cfg(feature = "redis")]
impl StackBackend for crate::backend::RedisBackend {
    type RateLimit = crate::rate_limit::RedisRateLimitStore;
    type Idempotency = crate::idempotency::RedisIdempotencyStore;
    type VersionPins = crate::versioning::RedisVersionPinStore;
    type Validators = crate::conditional::RedisValidatorStore;

    fn rate_limit_store(&self) -> Self::RateLimit {
        crate::rate_limit::RedisRateLimitStore::new(self)
    }
    fn idempotency_store(&self) -> Self::Idempotency {
        crate::idempotency::RedisIdempotencyStore::new(self)
    }
    fn version_pin_store(&self) -> Self::VersionPins {
        crate::versioning::RedisVersionPinStore::new(self)
    }
    fn validator_store(&self) -> Self::Validators {
        crate::conditional::RedisValidatorStore::new(self)
    }
}
