//! [`ValidatorStore`]: what the layer knows of each resource's current validators, and the
//! per-resource write lock that keeps two conditional updates from both succeeding.

use std::future::Future;
use std::time::{Duration, SystemTime};

use super::etag::EntityTag;
use crate::error::StoreError;
use crate::owner::OwnerToken;

/// A resource's current validators, as the store keeps them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredValidators {
    /// The current representation's entity tag.
    pub etag: Option<EntityTag>,
    /// Its modification time, in whole seconds.
    pub last_modified: Option<SystemTime>,
}

/// What [`ValidatorStore::lock`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Locked {
    /// The caller holds the resource's lock; these are its validators (`None`: not known).
    Held {
        /// The validators known when the lock was taken.
        current: Option<StoredValidators>,
    },
    /// Another request holds it.
    Busy {
        /// When its lease ends at the latest.
        lease_left: Duration,
        /// The validators known now, before the holder's update ends (`None`: not known): a
        /// precondition they already fail can be refused without waiting for the lock.
        current: Option<StoredValidators>,
    },
}

/// What an update leaves of a resource's validators when its lock ends.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Update {
    /// The update failed or changed nothing: keep what was known.
    Keep,
    /// The update succeeded and its response named the new validators.
    Set(StoredValidators),
    /// The update succeeded without naming them: forget what was known (the next request
    /// learns them again).
    Forget,
}

/// What a read of the store finds: the validators, when known, and the resource's generation,
/// which every completed update raises. A response learned from a read that started before an
/// update ended must not overwrite what that update stored; the generation says so.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// The validators, when known.
    pub validators: Option<StoredValidators>,
    /// How many updates completed, as far as the store remembers (0 when it knows nothing).
    pub generation: u64,
}

/// Validators by resource behind one interface; every backend gives the same answers to the same
/// sequence of calls (the conformance suite in `tests/backends.rs` checks it). Resources are
/// strings the layer builds from a route template and its parameters.
pub trait ValidatorStore: Clone + Send + Sync + 'static {
    /// The resource's validators, when known, and its generation.
    fn get(&self, resource: &str) -> impl Future<Output = Result<Snapshot, StoreError>> + Send;

    /// The snapshot, when this store can read it without waiting (the memory store can): the
    /// layer then calls the handler at once and keeps a smaller future. `None` (the default)
    /// sends the read through [`get`](Self::get).
    fn get_immediately(&self, resource: &str) -> Option<Result<Snapshot, StoreError>> {
        let _ = resource;
        None
    }

    /// Records the resource's validators, learned from a response to a read that began at
    /// `seen` generation, for `ttl`. Ignored (`false`) when an update completed since (the
    /// generation moved) or holds the resource's lock now: that update decides what is current.
    fn learn(
        &self,
        resource: &str,
        validators: &StoredValidators,
        seen: u64,
        ttl: Duration,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Takes the resource's write lock for `lease` and reads its validators, atomically.
    fn lock(
        &self,
        resource: &str,
        owner: &OwnerToken,
        lease: Duration,
    ) -> impl Future<Output = Result<Locked, StoreError>> + Send;

    /// Applies `update` and ends the lock, if `owner` still holds it (`false` otherwise). `Set`
    /// and `Forget` raise the generation.
    fn unlock(
        &self,
        resource: &str,
        owner: &OwnerToken,
        update: &Update,
        ttl: Duration,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Waits, at most `patience`, for the resource's write lock, which [`lock`](Self::lock)
    /// found busy, to end; the layer then asks for it again. The default waits all of
    /// `patience` (the layer backs off, from 2 ms doubling to 100 ms); a store that can tell when
    /// a lock ends wakes the waiter then, and the next update starts at once (the memory store
    /// does).
    fn until_unlocked(
        &self,
        resource: &str,
        patience: Duration,
    ) -> impl Future<Output = ()> + Send {
        let _ = resource;
        tokio::time::sleep(patience)
    }

    /// The backend's name for logs: `memory`, `redis`.
    fn backend_name(&self) -> &'static str;
}

impl Snapshot {
    /// One line: the generation, the tag as a header writes it (or `-`), the Unix seconds (or
    /// `-`), separated by spaces (a tag holds none).
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = self.generation.to_string().into_bytes();
        out.push(b' ');
        match self.validators.as_ref().and_then(|v| v.etag.as_ref()) {
            Some(tag) => out.extend_from_slice(tag.to_header_value().as_bytes()),
            None => out.push(b'-'),
        }
        out.push(b' ');
        match self
            .validators
            .as_ref()
            .and_then(|v| v.last_modified)
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        {
            Some(d) => out.extend_from_slice(d.as_secs().to_string().as_bytes()),
            None => out.push(b'-'),
        }
        out
    }

    /// Reads [`encode`](Self::encode)'s output back; `- -` is a generation without validators.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, StoreError> {
        let bad = || StoreError::Protocol("conditional validators".into());
        let mut parts = bytes.splitn(3, |&b| b == b' ');
        let (Some(generation), Some(tag), Some(secs)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        let number = |raw: &[u8]| -> Result<u64, StoreError> {
            std::str::from_utf8(raw)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(bad)
        };
        let generation = number(generation)?;
        let etag = match tag {
            b"-" => None,
            tag => Some(EntityTag::parse(tag).map_err(|_| bad())?),
        };
        let last_modified = match secs {
            b"-" => None,
            secs => Some(std::time::UNIX_EPOCH + Duration::from_secs(number(secs)?)),
        };
        let validators = (etag.is_some() || last_modified.is_some()).then_some(StoredValidators {
            etag,
            last_modified,
        });
        Ok(Self {
            validators,
            generation,
        })
    }
}
