//! [`WebhookSecret`]: a signing secret, its key schedule computed once, never shown.

use hmac::Mac;

use super::HmacSha256;
use crate::ConfigError;

/// A webhook signing secret (for Stripe, the `whsec_...` string as given, not base64-decoded).
///
/// The key schedule is computed once here and cloned per verification. `Debug` never shows the
/// secret, so a config struct holding one can be logged.
#[derive(Clone)]
pub struct WebhookSecret {
    pub(super) mac: HmacSha256,
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

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// Shared by the tests of every scheme, which all sign with a secret.
    pub(crate) fn secret(s: &str) -> WebhookSecret {
        WebhookSecret::new(s).expect("non-empty secret")
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
}
