//! One HMAC header over the raw body ([`HmacHeader`]): GitHub, Shopify, your own.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::Mac;

use super::TAG_LEN;
use super::error::SignatureError;
use super::header_bounds::check_header_bytes;
use super::secret::WebhookSecret;
use crate::ConfigError;

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
    use crate::webhook::signature::HmacSha256;
    use crate::webhook::signature::secret::tests::secret;

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
