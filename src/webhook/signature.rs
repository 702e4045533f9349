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

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::ConfigError;

type HmacSha256 = Hmac<Sha256>;

/// Length in bytes of an HMAC-SHA256 tag.
const TAG_LEN: usize = 32;

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

/// Why a webhook signature was refused.
///
/// Each variant has a stable machine-readable [`code`](SignatureError::code) for problem responses
/// and logs; the display text is for humans and may change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// The signature header is absent.
    #[error("webhook signature header is missing")]
    Missing,
    /// The signature header cannot be parsed: bytes other than visible ASCII, too long, too many
    /// items, a timestamp that is not a decimal number, or a signature in the wrong encoding.
    #[error("webhook signature header is malformed")]
    Malformed,
    /// The signature header carries no `t=` timestamp.
    #[error("webhook signature header has no timestamp")]
    NoTimestamp,
    /// The signature header carries no signature of the expected scheme (no `v1=` for Stripe, or a
    /// value without the configured prefix).
    #[error("webhook signature header has no signature of the expected scheme")]
    NoSignature,
    /// The signature is valid but its timestamp is outside the tolerance.
    ///
    /// Timestamps too far in the future are refused as well as old ones, so a sender with a
    /// skewed clock (or a captured request signed for later) is not accepted for longer than the
    /// tolerance. Stripe's own libraries only refuse timestamps in the past.
    #[error("webhook timestamp is {age_secs} s away from now, outside the tolerance")]
    Stale {
        /// Distance between the signed timestamp and now, in seconds, whichever side of now the
        /// timestamp lies.
        age_secs: u64,
    },
    /// No signature in the header matches the payload under any configured secret.
    #[error("no webhook signature matches the payload")]
    Mismatch,
}

impl SignatureError {
    /// A stable snake_case code for this error, suitable for problem responses and metrics.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Self::Missing => "webhook_signature_missing",
            Self::Malformed => "webhook_signature_malformed",
            Self::NoTimestamp => "webhook_timestamp_missing",
            Self::NoSignature => "webhook_signature_absent",
            Self::Stale { .. } => "webhook_timestamp_stale",
            Self::Mismatch => "webhook_signature_mismatch",
        }
    }
}

/// A webhook signing secret (for Stripe, the `whsec_...` string as given, not base64-decoded).
///
/// The key schedule is computed once here and cloned per verification. `Debug` never shows the
/// secret, so a config struct holding one can be logged.
#[derive(Clone)]
pub struct WebhookSecret {
    mac: HmacSha256,
}

impl WebhookSecret {
    /// A secret from its bytes.
    ///
    /// # Errors
    ///
    /// An empty secret is refused: it would make every signature forgeable.
    pub fn new(secret: impl AsRef<[u8]>) -> Result<Self, ConfigError> {
        let secret = secret.as_ref();
        if secret.is_empty() {
            return Err(ConfigError::new("webhook.secret", "must not be empty"));
        }
        let mac = HmacSha256::new_from_slice(secret)
            .map_err(|e| ConfigError::new("webhook.secret", e.to_string()))?;
        Ok(Self { mac })
    }
}

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(..)")
    }
}

/// Refuses headers that cannot be a genuine signature before any work is spent on them.
fn check_header_bytes(header: &[u8]) -> Result<(), SignatureError> {
    let visible = header
        .iter()
        .all(|&b| b == b'\t' || (b' '..=b'~').contains(&b));
    if header.len() > MAX_SIGNATURE_HEADER_LEN || !visible {
        return Err(SignatureError::Malformed);
    }
    Ok(())
}

/// Parses a `t=` value; returns the number and its canonical decimal digits.
///
/// The MAC is fed the canonical digits because Stripe's libraries sign `"%d" % int(t)`: a header
/// with `t=0001492774577` is checked against `1492774577`. Signs, spaces inside and underscores
/// (which Python's `int` would take) are refused.
fn parse_timestamp(value: &[u8]) -> Result<(u64, &[u8]), SignatureError> {
    if value.is_empty() {
        return Err(SignatureError::Malformed);
    }
    let mut n: u64 = 0;
    for &b in value {
        if !b.is_ascii_digit() {
            return Err(SignatureError::Malformed);
        }
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(b - b'0')))
            .ok_or(SignatureError::Malformed)?;
    }
    let first_significant = value
        .iter()
        .position(|&b| b != b'0')
        .unwrap_or(value.len().saturating_sub(1));
    let digits = value.get(first_significant..).unwrap_or(value);
    Ok((n, digits))
}

/// Splits `key=value` at the first `=`, trimming whitespace around both halves.
fn split_item(item: &[u8]) -> (&[u8], Option<&[u8]>) {
    match item.iter().position(|&b| b == b'=') {
        Some(eq) => {
            let (key, rest) = item.split_at(eq);
            let value = rest.get(1..).unwrap_or_default();
            (key.trim_ascii(), Some(value.trim_ascii()))
        }
        None => (item.trim_ascii(), None),
    }
}

/// Verifies a `Stripe-Signature` header against the raw request body.
///
/// `header` is the raw header value (`None` when absent), `payload` the body exactly as received
/// (any re-serialisation breaks the signature), `secrets` the accepted endpoint secrets (several
/// while rolling), `now_secs` the verifier's clock in Unix seconds, and `tolerance_secs` how far the
/// signed timestamp may be from `now_secs` in either direction (Stripe's default is 300; `0` allows
/// only the current second, `u64::MAX` disables the check).
///
/// Returns the signed timestamp on success.
///
/// The checks run in the order of Stripe's own libraries: the header must parse and carry a
/// timestamp and at least one `v1`, some `v1` must match, and only then is the timestamp compared
/// with the clock. Checking the signature first means a forged request learns nothing about the
/// verifier's clock or tolerance.
///
/// Whitespace around items is tolerated; `v0` and unknown keys are ignored; a `v1` that is not 64
/// hex digits is skipped (it can never match). A header with two `t=` items is refused rather than
/// read first-wins, so no two parsers can disagree on which timestamp was checked.
///
/// # Errors
///
/// [`SignatureError::Missing`], [`Malformed`](SignatureError::Malformed),
/// [`NoTimestamp`](SignatureError::NoTimestamp), [`NoSignature`](SignatureError::NoSignature),
/// [`Mismatch`](SignatureError::Mismatch) (also when `secrets` is empty) and
/// [`Stale`](SignatureError::Stale), checked in that order.
pub fn verify_stripe(
    header: Option<&[u8]>,
    payload: &[u8],
    secrets: &[WebhookSecret],
    now_secs: u64,
    tolerance_secs: u64,
) -> Result<u64, SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    check_header_bytes(header)?;

    let mut timestamp: Option<(u64, &[u8])> = None;
    // On the stack: the item bound caps how many signatures there can be.
    let mut signatures = [[0u8; TAG_LEN]; MAX_SIGNATURE_ITEMS];
    let mut decoded = 0usize;
    let mut saw_v1 = false;

    for (index, item) in header.split(|&b| b == b',').enumerate() {
        if index >= MAX_SIGNATURE_ITEMS {
            return Err(SignatureError::Malformed);
        }
        match split_item(item) {
            (b"t", Some(value)) => {
                if timestamp.is_some() {
                    return Err(SignatureError::Malformed);
                }
                timestamp = Some(parse_timestamp(value)?);
            }
            (b"v1", Some(value)) => {
                saw_v1 = true;
                if let Some(slot) = signatures.get_mut(decoded)
                    && hex::decode_to_slice(value, slot).is_ok()
                {
                    decoded += 1;
                }
            }
            // A bare `t` or `v1` is what Stripe's parser chokes on too.
            (b"t" | b"v1", None) => return Err(SignatureError::Malformed),
            _ => {}
        }
    }

    let (signed_at, digits) = timestamp.ok_or(SignatureError::NoTimestamp)?;
    if !saw_v1 {
        return Err(SignatureError::NoSignature);
    }

    let candidates = signatures.get(..decoded).unwrap_or_default();
    let matched = !candidates.is_empty()
        && secrets.iter().any(|secret| {
            let mut mac = secret.mac.clone();
            // Fed piecewise so the signed string `"{t}.{payload}"` is never built.
            mac.update(digits);
            mac.update(b".");
            mac.update(payload);
            candidates
                .iter()
                .any(|sig| mac.clone().verify_slice(sig).is_ok())
        });
    if !matched {
        return Err(SignatureError::Mismatch);
    }

    let age_secs = now_secs.abs_diff(signed_at);
    if age_secs > tolerance_secs {
        return Err(SignatureError::Stale { age_secs });
    }
    Ok(signed_at)
}

/// Signs `payload` as Stripe does, returning a `Stripe-Signature` header value
/// (`t={timestamp},v1={hex}`): for tests, and for applications that send Stripe-style webhooks.
#[must_use]
pub fn sign_stripe(payload: &[u8], secret: &WebhookSecret, timestamp: u64) -> String {
    let mut mac = secret.mac.clone();
    let t = timestamp.to_string();
    mac.update(t.as_bytes());
    mac.update(b".");
    mac.update(payload);
    let tag = mac.finalize().into_bytes();
    let mut out = String::with_capacity(t.len() + 6 + 2 * TAG_LEN);
    out.push_str("t=");
    out.push_str(&t);
    out.push_str(",v1=");
    out.push_str(&hex::encode(tag));
    out
}

/// How the MAC is written in an [`HmacHeader`] value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SignatureEncoding {
    /// Hex digits (either case accepted, lower case produced), as GitHub sends.
    #[default]
    Hex,
    /// Standard-alphabet base64 with padding, as Shopify sends.
    Base64,
}

/// A provider that signs the raw body with HMAC-SHA256 and sends the MAC in one header, optionally
/// after a fixed prefix.
///
/// These schemes sign no timestamp, so a captured delivery verifies forever; de-duplicate by event
/// id to refuse replays.
#[derive(Debug, Clone)]
pub struct HmacHeader {
    header: http::HeaderName,
    prefix: Option<Box<str>>,
    encoding: SignatureEncoding,
}

impl HmacHeader {
    /// A scheme reading `header_name`, with no prefix and hex encoding.
    ///
    /// # Errors
    ///
    /// Refuses a string that is not a valid HTTP header name.
    pub fn new(header_name: &str) -> Result<Self, ConfigError> {
        let header = http::HeaderName::from_bytes(header_name.as_bytes())
            .map_err(|e| ConfigError::new("webhook.header", e.to_string()))?;
        Ok(Self {
            header,
            prefix: None,
            encoding: SignatureEncoding::Hex,
        })
    }

    /// GitHub: `X-Hub-Signature-256: sha256=<hex>`.
    #[must_use]
    pub fn github() -> Self {
        Self {
            header: http::HeaderName::from_static("x-hub-signature-256"),
            prefix: Some("sha256=".into()),
            encoding: SignatureEncoding::Hex,
        }
    }

    /// Shopify: `X-Shopify-Hmac-Sha256: <base64>`.
    #[must_use]
    pub fn shopify() -> Self {
        Self {
            header: http::HeaderName::from_static("x-shopify-hmac-sha256"),
            prefix: None,
            encoding: SignatureEncoding::Base64,
        }
    }

    /// Requires the value to start with `prefix` (case-sensitive), e.g. `sha256=`; an empty
    /// prefix means none.
    #[must_use]
    pub fn prefix(mut self, prefix: impl Into<Box<str>>) -> Self {
        let prefix = prefix.into();
        self.prefix = (!prefix.is_empty()).then_some(prefix);
        self
    }

    /// Sets how the MAC is encoded.
    #[must_use]
    pub fn encoding(mut self, encoding: SignatureEncoding) -> Self {
        self.encoding = encoding;
        self
    }

    /// The header this scheme reads.
    #[must_use]
    pub fn header(&self) -> &http::HeaderName {
        &self.header
    }

    /// Verifies the header `value` (`None` when absent) against the raw body under any of
    /// `secrets`.
    ///
    /// # Errors
    ///
    /// [`SignatureError::Missing`] without a value; [`Malformed`](SignatureError::Malformed) for
    /// bytes other than visible ASCII or a MAC that does not decode to 32 bytes;
    /// [`NoSignature`](SignatureError::NoSignature) when the prefix is absent or nothing follows
    /// it; [`Mismatch`](SignatureError::Mismatch) when no secret matches (also when `secrets` is
    /// empty).
    pub fn verify(
        &self,
        value: Option<&[u8]>,
        payload: &[u8],
        secrets: &[WebhookSecret],
    ) -> Result<(), SignatureError> {
        let value = value.ok_or(SignatureError::Missing)?;
        check_header_bytes(value)?;
        let mut encoded = value.trim_ascii();
        if let Some(prefix) = &self.prefix {
            encoded = encoded
                .strip_prefix(prefix.as_bytes())
                .ok_or(SignatureError::NoSignature)?;
        }
        if encoded.is_empty() {
            return Err(SignatureError::NoSignature);
        }

        let mut tag = [0u8; TAG_LEN];
        let decoded = match self.encoding {
            SignatureEncoding::Hex => hex::decode_to_slice(encoded, &mut tag).is_ok(),
            SignatureEncoding::Base64 => {
                // Room for any 44-character value; only exactly 32 bytes are a tag.
                let mut room = [0u8; 48];
                match STANDARD.decode_slice(encoded, &mut room) {
                    Ok(TAG_LEN) => {
                        tag.copy_from_slice(&room[..TAG_LEN]);
                        true
                    }
                    _ => false,
                }
            }
        };
        if !decoded {
            return Err(SignatureError::Malformed);
        }

        let matched = secrets.iter().any(|secret| {
            let mut mac = secret.mac.clone();
            mac.update(payload);
            mac.verify_slice(&tag).is_ok()
        });
        if matched {
            Ok(())
        } else {
            Err(SignatureError::Mismatch)
        }
    }

    /// Signs `payload`, returning the header value this scheme expects (prefix included).
    #[must_use]
    pub fn sign(&self, payload: &[u8], secret: &WebhookSecret) -> String {
        let mut mac = secret.mac.clone();
        mac.update(payload);
        let tag = mac.finalize().into_bytes();
        let encoded = match self.encoding {
            SignatureEncoding::Hex => hex::encode(tag),
            SignatureEncoding::Base64 => STANDARD.encode(tag),
        };
        match &self.prefix {
            Some(prefix) => format!("{prefix}{encoded}"),
            None => encoded,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    const VECTORS: &str = include_str!("../../tests/data/stripe-webhooks.json");
    const TOLERANCE: u64 = 300;

    fn secret(s: &str) -> WebhookSecret {
        WebhookSecret::new(s).expect("non-empty secret")
    }

    fn vectors() -> Value {
        serde_json::from_str(VECTORS).expect("vectors parse")
    }

    fn field<'a>(v: &'a Value, key: &str) -> &'a str {
        v[key]
            .as_str()
            .unwrap_or_else(|| panic!("missing string {key}"))
    }

    #[test]
    fn stripe_vectors() {
        let v = vectors();
        let payload = field(&v, "payload").as_bytes();
        let cases = v["cases"].as_array().expect("cases");
        assert!(cases.len() >= 7);
        for case in cases {
            let name = field(case, "name");
            let header = field(case, "header");
            let now = case["now"].as_u64().expect("now");
            let result = verify_stripe(
                Some(header.as_bytes()),
                payload,
                &[secret(field(case, "secret"))],
                now,
                TOLERANCE,
            );
            match field(case, "expect") {
                "valid" => assert_eq!(result, Ok(1_767_225_600), "{name}"),
                "invalid" => {
                    let expected = match name {
                        "only v0" => SignatureError::NoSignature,
                        "wrong secret" => SignatureError::Mismatch,
                        "no timestamp" => SignatureError::NoTimestamp,
                        n if n.starts_with("stale") => SignatureError::Stale { age_secs: 301 },
                        other => panic!("unnamed invalid case {other}"),
                    };
                    assert_eq!(result, Err(expected), "{name}");
                }
                other => panic!("unknown expectation {other}"),
            }
        }
    }

    #[test]
    fn stripe_tampered_body() {
        let v = vectors();
        assert_eq!(field(&v, "tampered_expect"), "invalid");
        let result = verify_stripe(
            Some(field(&v, "tampered_header").as_bytes()),
            field(&v, "tampered_payload").as_bytes(),
            &[secret(field(&v, "tampered_secret"))],
            1_767_225_610,
            TOLERANCE,
        );
        assert_eq!(result, Err(SignatureError::Mismatch));
        // The same header still verifies the untampered body.
        let ok = verify_stripe(
            Some(field(&v, "tampered_header").as_bytes()),
            field(&v, "payload").as_bytes(),
            &[secret(field(&v, "tampered_secret"))],
            1_767_225_610,
            TOLERANCE,
        );
        assert_eq!(ok, Ok(1_767_225_600));
    }

    #[test]
    fn stripe_any_secret_matches() {
        let v = vectors();
        let header = field(&v["cases"][0], "header");
        let secrets = [
            secret("whsec_wrong"),
            secret("whsec_vectors_primary_0123456789"),
        ];
        let result = verify_stripe(
            Some(header.as_bytes()),
            field(&v, "payload").as_bytes(),
            &secrets,
            1_767_225_610,
            TOLERANCE,
        );
        assert_eq!(result, Ok(1_767_225_600));
        let none = verify_stripe(
            Some(header.as_bytes()),
            field(&v, "payload").as_bytes(),
            &[],
            1_767_225_610,
            TOLERANCE,
        );
        assert_eq!(none, Err(SignatureError::Mismatch));
    }

    #[test]
    fn stripe_round_trip() {
        let s = secret("whsec_round_trip");
        let header = sign_stripe(b"{\"id\":\"evt\"}", &s, 1_700_000_000);
        assert!(header.starts_with("t=1700000000,v1="));
        assert_eq!(header.len(), "t=1700000000,v1=".len() + 64);
        let ok = verify_stripe(
            Some(header.as_bytes()),
            b"{\"id\":\"evt\"}",
            std::slice::from_ref(&s),
            1_700_000_000,
            TOLERANCE,
        );
        assert_eq!(ok, Ok(1_700_000_000));
        let bad = verify_stripe(
            Some(header.as_bytes()),
            b"{\"id\":\"evt2\"}",
            &[s],
            1_700_000_000,
            TOLERANCE,
        );
        assert_eq!(bad, Err(SignatureError::Mismatch));
    }

    #[test]
    fn stripe_tolerance_both_directions() {
        let s = secret("whsec_time");
        let t = 1_700_000_000;
        let header = sign_stripe(b"body", &s, t);
        let check = |now| {
            verify_stripe(
                Some(header.as_bytes()),
                b"body",
                std::slice::from_ref(&s),
                now,
                300,
            )
        };
        assert_eq!(check(t + 300), Ok(t));
        assert_eq!(check(t - 300), Ok(t));
        assert_eq!(check(t + 301), Err(SignatureError::Stale { age_secs: 301 }));
        assert_eq!(check(t - 301), Err(SignatureError::Stale { age_secs: 301 }));
        assert_eq!(check(0), Err(SignatureError::Stale { age_secs: t }));
        let disabled = verify_stripe(Some(header.as_bytes()), b"body", &[s], 0, u64::MAX);
        assert_eq!(disabled, Ok(t));
    }

    #[test]
    fn stripe_forgery_checked_before_time() {
        // A forged, stale header reports the mismatch, not the clock.
        let header = format!("t=1,v1={}", "ab".repeat(32));
        let result = verify_stripe(
            Some(header.as_bytes()),
            b"body",
            &[secret("whsec_x")],
            1_700_000_000,
            300,
        );
        assert_eq!(result, Err(SignatureError::Mismatch));
    }

    #[test]
    fn stripe_lenient_where_stripe_is() {
        let s = secret("whsec_lenient");
        let t = 1_700_000_000;
        let sig = sign_stripe(b"body", &s, t);
        let v1 = sig.split_once(",v1=").expect("v1").1;
        let verify = |header: &str| {
            verify_stripe(
                Some(header.as_bytes()),
                b"body",
                std::slice::from_ref(&s),
                t,
                300,
            )
        };
        // Whitespace around items and around `=`.
        assert_eq!(verify(&format!(" t = {t} ,\tv1={v1} ")), Ok(t));
        // Unknown keys, v0, empty items and undecodable v1 entries are skipped.
        assert_eq!(
            verify(&format!("t={t},foo=bar,,v0=zz,v1=nothex,v1={v1},")),
            Ok(t)
        );
        // Upper-case hex names the same MAC.
        assert_eq!(verify(&format!("t={t},v1={}", v1.to_uppercase())), Ok(t));
        // Leading zeros: Stripe signs `%d` of the parsed integer.
        assert_eq!(verify(&format!("t=000{t},v1={v1}")), Ok(t));
        // Only undecodable v1 entries: a signature of the scheme is present but cannot match.
        assert_eq!(
            verify(&format!("t={t},v1=abc")),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn stripe_garbage_headers() {
        let s = [secret("whsec_garbage")];
        let sig = "ab".repeat(32);
        let verify = |header: &[u8]| verify_stripe(Some(header), b"body", &s, 1_700_000_000, 300);
        assert_eq!(
            verify_stripe(None, b"body", &s, 0, 300),
            Err(SignatureError::Missing)
        );
        assert_eq!(verify(b""), Err(SignatureError::NoTimestamp));
        assert_eq!(verify(b",,,"), Err(SignatureError::NoTimestamp));
        assert_eq!(verify(b"t=1700000000"), Err(SignatureError::NoSignature));
        for bad in [
            "t=abc,v1=00",
            "t=,v1=00",
            "t=-1,v1=00",
            "t=+1,v1=00",
            "t=1_000,v1=00",
            "t=1 0,v1=00",
            "t=99999999999999999999,v1=00",
            "t=1,t=1,v1=00",
            "t,v1=00",
            "t=1,v1",
        ] {
            assert_eq!(
                verify(bad.as_bytes()),
                Err(SignatureError::Malformed),
                "{bad}"
            );
        }
        assert_eq!(
            verify("t=1,v1=ü".as_bytes()),
            Err(SignatureError::Malformed)
        );
        assert_eq!(verify(b"t=1\xff,v1=00"), Err(SignatureError::Malformed));
        assert_eq!(verify(b"t=1\n,v1=00"), Err(SignatureError::Malformed));
        assert_eq!(verify(b"t=1\0,v1=00"), Err(SignatureError::Malformed));

        let huge = format!("t=1700000000,v1={sig},v0={}", "a".repeat(10 * 1024));
        assert_eq!(verify(huge.as_bytes()), Err(SignatureError::Malformed));

        let many = format!("t=1700000000{}", format!(",v1={sig}").repeat(16));
        assert_eq!(verify(many.as_bytes()), Err(SignatureError::Malformed));
        let fifteen = format!("t=1700000000{}", format!(",v1={sig}").repeat(15));
        assert_eq!(verify(fifteen.as_bytes()), Err(SignatureError::Mismatch));
    }

    #[test]
    fn secret_refuses_empty_and_hides_itself() {
        assert!(WebhookSecret::new("").is_err());
        assert!(WebhookSecret::new(b"").is_err());
        let s = secret("whsec_do_not_print");
        let shown = format!("{s:?}");
        assert_eq!(shown, "WebhookSecret(..)");
        assert!(!format!("{:?}", std::slice::from_ref(&s)).contains("do_not_print"));
    }

    #[test]
    fn error_codes_are_distinct() {
        let all = [
            SignatureError::Missing,
            SignatureError::Malformed,
            SignatureError::NoTimestamp,
            SignatureError::NoSignature,
            SignatureError::Stale { age_secs: 1 },
            SignatureError::Mismatch,
        ];
        let mut codes: Vec<_> = all.iter().map(SignatureError::code).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), all.len());
        assert!(codes.iter().all(|c| c.starts_with("webhook_")));
        assert!(
            SignatureError::Stale { age_secs: 42 }
                .to_string()
                .contains("42")
        );
    }

    #[test]
    fn github_documented_vector() {
        // From GitHub's "Validating webhook deliveries" documentation.
        let gh = HmacHeader::github();
        assert_eq!(gh.header().as_str(), "x-hub-signature-256");
        let s = secret("It's a Secret to Everybody");
        let value = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert_eq!(gh.sign(b"Hello, World!", &s), value);
        assert_eq!(
            gh.verify(
                Some(value.as_bytes()),
                b"Hello, World!",
                std::slice::from_ref(&s)
            ),
            Ok(())
        );
        assert_eq!(
            gh.verify(
                Some(value.as_bytes()),
                b"Hello, World?",
                std::slice::from_ref(&s)
            ),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            gh.verify(None, b"Hello, World!", std::slice::from_ref(&s)),
            Err(SignatureError::Missing)
        );
        // Without its prefix the value is not of the expected scheme.
        let bare = value.trim_start_matches("sha256=");
        assert_eq!(
            gh.verify(
                Some(bare.as_bytes()),
                b"Hello, World!",
                std::slice::from_ref(&s)
            ),
            Err(SignatureError::NoSignature)
        );
        assert_eq!(
            gh.verify(Some(b"sha256="), b"Hello, World!", std::slice::from_ref(&s)),
            Err(SignatureError::NoSignature)
        );
        assert_eq!(
            gh.verify(
                Some(b"sha256=abcd"),
                b"Hello, World!",
                std::slice::from_ref(&s)
            ),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            gh.verify(Some(value.as_bytes()), b"Hello, World!", &[]),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn base64_header_round_trip() {
        let shop = HmacHeader::new("X-Shopify-Hmac-Sha256")
            .expect("valid name")
            .encoding(SignatureEncoding::Base64);
        assert_eq!(shop.header(), HmacHeader::shopify().header());
        let s = secret("shpss_secret");
        let payload = br#"{"id":1}"#;
        let value = shop.sign(payload, &s);
        assert_eq!(value.len(), 44);
        assert!(value.ends_with('='));

        // Cross-check with the base64 crate and an independent MAC.
        let mut mac = HmacSha256::new_from_slice(b"shpss_secret").expect("key");
        mac.update(payload);
        let tag = mac.finalize().into_bytes();
        assert_eq!(value, base64::engine::general_purpose::STANDARD.encode(tag));

        assert_eq!(
            shop.verify(Some(value.as_bytes()), payload, std::slice::from_ref(&s)),
            Ok(())
        );
        assert_eq!(
            shop.verify(Some(value.as_bytes()), b"{}", std::slice::from_ref(&s)),
            Err(SignatureError::Mismatch)
        );
        // Hex where base64 is expected, or a truncated value, does not decode to 32 bytes.
        let hex_value = hex::encode(tag);
        assert_eq!(
            shop.verify(
                Some(hex_value.as_bytes()),
                payload,
                std::slice::from_ref(&s)
            ),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            shop.verify(
                Some(value.get(..40).expect("prefix").as_bytes()),
                payload,
                std::slice::from_ref(&s)
            ),
            Err(SignatureError::Malformed)
        );

        let prefixed = shop.clone().prefix("v1,");
        let signed = prefixed.sign(payload, &s);
        assert!(signed.starts_with("v1,"));
        assert_eq!(
            prefixed.verify(Some(signed.as_bytes()), payload, &[s]),
            Ok(())
        );
        assert!(HmacHeader::new("bad header").is_err());
        assert!(HmacHeader::new("").is_err());
    }
}
