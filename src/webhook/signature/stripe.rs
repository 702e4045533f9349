//! Stripe's scheme: `Stripe-Signature: t=<timestamp>,v1=<hex>`, the timestamp signed with the
//! body.

use hmac::Mac;

use super::TAG_LEN;
use super::error::SignatureError;
use super::header_bounds::{MAX_SIGNATURE_ITEMS, check_header_bytes};
use super::secret::WebhookSecret;

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
#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    use crate::webhook::signature::secret::tests::secret;

    const VECTORS: &str = include_str!("../../../tests/data/stripe-webhooks.json");
    const TOLERANCE: u64 = 300;

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
}
