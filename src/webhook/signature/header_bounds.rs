//! The bounds on a signature header: untrusted input, refused before any MAC is computed.

use super::error::SignatureError;

/// Longest signature header accepted, in bytes; longer ones are [`SignatureError::Malformed`].
///
/// A real `Stripe-Signature` header is under 200 bytes even during a secret roll; the bound keeps a
/// hostile header from costing more than a few microseconds to reject.
pub const MAX_SIGNATURE_HEADER_LEN: usize = 8 * 1024;

/// Most comma-separated items accepted in a `Stripe-Signature` header; more is
/// [`SignatureError::Malformed`].
///
/// Each `v1` item costs one MAC comparison per secret, so the bound also bounds the work.
pub const MAX_SIGNATURE_ITEMS: usize = 16;

/// Refuses headers that cannot be a genuine signature before any work is spent on them.
pub(super) fn check_header_bytes(header: &[u8]) -> Result<(), SignatureError> {
    let visible = header
        .iter()
        .all(|&b| b == b'\t' || (b' '..=b'~').contains(&b));
    if header.len() > MAX_SIGNATURE_HEADER_LEN || !visible {
        return Err(SignatureError::Malformed);
    }
    Ok(())
}
