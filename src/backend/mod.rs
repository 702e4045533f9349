//! Backend handles: where policy state lives. Each layer's store trait has an implementation for
//! each backend in the layer's own module; this module holds only the handles.

#[cfg(feature = "memory")]
pub(crate) mod lock_end;
#[cfg(feature = "memory")]
pub mod memory;
#[cfg(feature = "redis")]
pub mod redis;

#[cfg(feature = "memory")]
pub use memory::MemoryBackend;
#[cfg(feature = "redis")]
pub use redis::RedisBackend;
