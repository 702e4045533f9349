//! Webhook signature verification: pure functions, no I/O, no clock of their own.
//!
//! Two schemes are covered:
//!
//! - **Stripe** (`Stripe-Signature: t=1492774577,v1=<hex>[,v1=<hex>...]`): the signature is
//!   HMAC-SHA256 over `"{t}.{raw_body}"`, so the timestamp is signed along with the body and a
//!   replayed delivery can be refused once it is older than the tolerance. Several `v1` entries
//!   appear while a secret is being rolled; any one matching any configured secret passes. Other
//!   schemes (`v0`, unknown keys) are ignored, as Stripe's own libraries do.
//! - **A single HMAC header** (GitHub `X-Hub-Signature-256: sha256=<hex>`, Shopify
//!   `X-Shopify-Hmac-Sha256: <base64>`): HMAC-SHA256 over the raw body, with an optional prefix and
//!   hex or base64 encoding, configured with [`HmacHeader`]. These schemes sign no timestamp, so
//!   they cannot refuse replays by themselves.
//!
//! Every comparison goes through [`hmac::Mac::verify_slice`], which compares in constant time: an
//! ordinary `==` stops at the first differing byte, and an attacker who can time responses could
//! then forge a valid signature one byte at a time.
//!
//! Headers are untrusted input: anything that is not visible ASCII, longer than
//! [`MAX_SIGNATURE_HEADER_LEN`] or split into more than [`MAX_SIGNATURE_ITEMS`] items is refused
//! before any MAC is computed, and no input makes these functions panic or allocate on the
//! verification path.

use hmac::Hmac;
use sha2::Sha256;

mod error;
mod header_bounds;
mod hmac_header;
mod secret;
mod stripe;

pub use error::SignatureError;
pub use header_bounds::{MAX_SIGNATURE_HEADER_LEN, MAX_SIGNATURE_ITEMS};
pub use hmac_header::{HmacHeader, SignatureEncoding};
pub use secret::WebhookSecret;
pub use stripe::{sign_stripe, verify_stripe};

type HmacSha256 = Hmac<Sha256>;

/// Length in bytes of an HMAC-SHA256 tag.
const TAG_LEN: usize = 32;
