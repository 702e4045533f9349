//! Who is calling: the [`Principal`], and the [`KeyExtractor`] that finds a caller for the policies
//! that count per caller (rate limits today; idempotency scopes and version pins later).
//!
//! A caller is found, in this order: a [`Principal`] that an earlier layer (JWT auth) put in the
//! request extensions; an API key header resolved to a principal; the client IP address, but only
//! when [`TrustedProxies`] are configured explicitly. An anonymous principal (what optional JWT
//! authentication inserts for a request without a token) is the last resort: an API key or a
//! trusted client IP tells anonymous callers apart, so they do not all share one bucket.
//!
//! # Security: client IP addresses
//! `X-Forwarded-For` is written by whoever sends the request, so it is never read unless the
//! immediate peer is one of the proxies you name. Keying by IP is opt-in: behind a load balancer the
//! peer address is the balancer's, and every client would share one bucket.

mod caller;
#[cfg(feature = "axum")]
mod extract;
mod identity;
mod key_extractor;
mod proxies;

pub use caller::Caller;
pub use identity::{Principal, PrincipalFields, PrincipalKind};
pub(crate) use key_extractor::MAX_API_KEY_LEN;
pub use key_extractor::{ApiKeyResolver, KeyExtractor};
pub use proxies::{PeerAddr, TrustedProxies};
