//! Verification keys, each bound to exactly one algorithm (RFC 8725 section 3.1), and the JWK
//! reading that static keys and JWKS documents share.

use std::fmt;
use std::sync::Arc;

use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};
use serde_json::Value;

use crate::error::ConfigError;

/// A key that verifies tokens of exactly one algorithm.
///
/// Binding the algorithm to the key, not reading it from the token, is what defeats key
/// confusion: an `HS256` token whose "secret" is an RSA public key's PEM never meets an HMAC key.
///
/// ```
/// use api_policy::auth::{Algorithm, VerifyKey};
/// let key = VerifyKey::hmac(Algorithm::HS256, b"a-secret-of-at-least-thirty-two-bytes")?.with_kid("2026-11");
/// assert_eq!(key.algorithm(), Algorithm::HS256);
/// assert!(VerifyKey::hmac(Algorithm::RS256, b"a-secret-of-at-least-thirty-two-bytes").is_err());
/// # Ok::<(), api_policy::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct VerifyKey {
    kid: Option<Arc<str>>,
    algorithm: Algorithm,
    key: Arc<DecodingKey>,
}

impl fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyKey")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

impl VerifyKey {
    fn new(algorithm: Algorithm, key: DecodingKey) -> Self {
        Self {
            kid: None,
            algorithm,
            key: Arc::new(key),
        }
    }

    /// An HMAC secret for `HS256`, `HS384` or `HS512`.
    ///
    /// # Errors
    /// A [`ConfigError`] for a non-HMAC algorithm, or a secret shorter than the hash (RFC 7518
    /// section 3.2: 32 bytes for `HS256`, 48 for `HS384`, 64 for `HS512`).
    pub fn hmac(algorithm: Algorithm, secret: impl AsRef<[u8]>) -> Result<Self, ConfigError> {
        expect_family(algorithm, AlgorithmFamily::Hmac)?;
        let secret = secret.as_ref();
        let minimum = match algorithm {
            Algorithm::HS384 => 48,
            Algorithm::HS512 => 64,
            _ => 32,
        };
        if secret.len() < minimum {
            return Err(ConfigError::new(
                "jwt.keys",
                format!(
                    "an {algorithm:?} secret needs at least {minimum} bytes, this one has {}",
                    secret.len()
                ),
            ));
        }
        Ok(Self::new(algorithm, DecodingKey::from_secret(secret)))
    }

    /// An RSA public key in PEM (`BEGIN PUBLIC KEY` or `BEGIN RSA PUBLIC KEY`) for `RS*` or
    /// `PS*`.
    ///
    /// # Errors
    /// A [`ConfigError`] for another algorithm family or an unreadable key.
    pub fn rsa_pem(algorithm: Algorithm, pem: impl AsRef<[u8]>) -> Result<Self, ConfigError> {
        expect_family(algorithm, AlgorithmFamily::Rsa)?;
        let key = DecodingKey::from_rsa_pem(pem.as_ref()).map_err(pem_error)?;
        Ok(Self::new(algorithm, key))
    }

    /// An EC public key in PEM for `ES256` (P-256) or `ES384` (P-384).
    ///
    /// # Errors
    /// A [`ConfigError`] for another algorithm family or an unreadable key.
    pub fn ec_pem(algorithm: Algorithm, pem: impl AsRef<[u8]>) -> Result<Self, ConfigError> {
        expect_family(algorithm, AlgorithmFamily::Ec)?;
        let key = DecodingKey::from_ec_pem(pem.as_ref()).map_err(pem_error)?;
        Ok(Self::new(algorithm, key))
    }

    /// An Ed25519 public key in PEM, for `EdDSA`.
    ///
    /// # Errors
    /// A [`ConfigError`] for an unreadable key.
    pub fn ed_pem(pem: impl AsRef<[u8]>) -> Result<Self, ConfigError> {
        let key = DecodingKey::from_ed_pem(pem.as_ref()).map_err(pem_error)?;
        Ok(Self::new(Algorithm::EdDSA, key))
    }

    /// A public key (or, for `oct`, a secret) written as a JWK (RFC 7517). The algorithm is the
    /// JWK's `alg`, or follows from its curve (`P-256` -> `ES256`, `P-384` -> `ES384`, `Ed25519`
    /// -> `EdDSA`); an RSA or `oct` JWK must name its `alg`. The JWK's `kid` is kept.
    ///
    /// # Errors
    /// A [`ConfigError`] for JSON that is not a usable verification JWK.
    pub fn from_jwk(jwk: &str) -> Result<Self, ConfigError> {
        let value: Value = serde_json::from_str(jwk)
            .map_err(|e| ConfigError::new("jwt.keys", format!("the JWK is not JSON: {e}")))?;
        read_jwk(&value, JwkPolicy::STATIC).map_err(|e| ConfigError::new("jwt.keys", e.0))
    }

    /// Names the key, matched against the token header's `kid`. A key without a name is tried
    /// for every token of its algorithm.
    #[must_use]
    pub fn with_kid(mut self, kid: impl Into<Arc<str>>) -> Self {
        self.kid = Some(kid.into());
        self
    }

    /// The key id, if it has one.
    #[must_use]
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The one algorithm this key verifies.
    #[must_use]
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    pub(crate) fn decoding_key(&self) -> &DecodingKey {
        &self.key
    }

    /// Whether this key may verify a token whose header says `kid` and `algorithm`. A token
    /// without a `kid` may be tried against every key of its algorithm, and a key without one
    /// against every token of its algorithm (issuers often set `kid` on tokens whose key was
    /// configured here as a bare PEM or secret).
    pub(crate) fn fits(&self, kid: Option<&str>, algorithm: Algorithm) -> bool {
        self.algorithm == algorithm
            && (kid.is_none() || self.kid.is_none() || self.kid.as_deref() == kid)
    }
}

fn expect_family(algorithm: Algorithm, family: AlgorithmFamily) -> Result<(), ConfigError> {
    if algorithm.family() == family {
        Ok(())
    } else {
        Err(ConfigError::new(
            "jwt.keys",
            format!("{algorithm:?} cannot be verified with a {family:?} key"),
        ))
    }
}

fn pem_error(error: jsonwebtoken::errors::Error) -> ConfigError {
    ConfigError::new("jwt.keys", format!("unreadable PEM key: {error}"))
}

/// Why a JWK was not taken.
#[derive(Debug)]
pub(crate) struct Skipped(pub(crate) String);

/// What a JWK source may hold.
#[derive(Debug, Clone, Copy)]
pub(crate) struct JwkPolicy {
    /// `oct` keys: fine when configured by hand, never from a published JWKS.
    pub(crate) symmetric: bool,
    /// The algorithm for an RSA JWK without `alg` (Azure AD publishes such keys).
    pub(crate) rsa_default: Option<Algorithm>,
}

impl JwkPolicy {
    pub(crate) const STATIC: Self = Self {
        symmetric: true,
        rsa_default: None,
    };
}

/// Reads one JWK. Keys for encryption (`use` other than `sig`, `key_ops` without `verify`),
/// unknown key types and curves are skipped with the reason.
pub(crate) fn read_jwk(jwk: &Value, policy: JwkPolicy) -> Result<VerifyKey, Skipped> {
    let field = |name: &str| jwk.get(name).and_then(Value::as_str);
    let skip = |why: String| Err(Skipped(why));
    if let Some(usage) = field("use")
        && usage != "sig"
    {
        return skip(format!("`use` is `{usage}`, not `sig`"));
    }
    if let Some(ops) = jwk.get("key_ops").and_then(Value::as_array)
        && !ops.iter().any(|op| op == "verify")
    {
        return skip("`key_ops` does not include `verify`".into());
    }
    let named = match field("alg") {
        Some(name) => Some(
            name.parse::<Algorithm>()
                .map_err(|_| Skipped(format!("`alg` `{name}` is not a signature algorithm")))?,
        ),
        None => None,
    };
    let kty = field("kty").unwrap_or("");
    let required = |name: &str| field(name).ok_or_else(|| Skipped(format!("no `{name}`")));
    let bad_key = |e: jsonwebtoken::errors::Error| Skipped(format!("unreadable key: {e}"));
    let (algorithm, key) = match kty {
        "RSA" => {
            let algorithm = named
                .or(policy.rsa_default)
                .ok_or_else(|| Skipped("an RSA JWK must name its `alg`".into()))?;
            let key = DecodingKey::from_rsa_components(required("n")?, required("e")?)
                .map_err(bad_key)?;
            (algorithm, key)
        }
        "EC" => {
            let algorithm = match field("crv") {
                Some("P-256") => Algorithm::ES256,
                Some("P-384") => Algorithm::ES384,
                other => return skip(format!("unsupported EC curve {other:?}")),
            };
            let key =
                DecodingKey::from_ec_components(required("x")?, required("y")?).map_err(bad_key)?;
            (algorithm, key)
        }
        "OKP" => {
            if field("crv") != Some("Ed25519") {
                return skip(format!("unsupported OKP curve {:?}", field("crv")));
            }
            let key = DecodingKey::from_ed_components(required("x")?).map_err(bad_key)?;
            (Algorithm::EdDSA, key)
        }
        "oct" if policy.symmetric => {
            let algorithm =
                named.ok_or_else(|| Skipped("an `oct` JWK must name its `alg`".into()))?;
            let key = DecodingKey::from_base64_secret(required("k")?).map_err(bad_key)?;
            let secret = key.try_get_hmac_secret().map_err(bad_key)?;
            VerifyKey::hmac(algorithm, secret).map_err(|e| Skipped(e.reason))?;
            (algorithm, key)
        }
        "oct" => return skip("symmetric keys are never taken from a published JWKS".into()),
        other => return skip(format!("unknown `kty` `{other}`")),
    };
    if let Some(named) = named
        && named != algorithm
    {
        return skip(format!(
            "`alg` {named:?} does not fit a {kty} key of this kind"
        ));
    }
    if algorithm.family() != key.family() {
        return skip(format!("{algorithm:?} does not fit a {kty} key"));
    }
    let mut key = VerifyKey::new(algorithm, key);
    if let Some(kid) = field("kid") {
        key = key.with_kid(kid);
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const PUBLISHED: JwkPolicy = JwkPolicy {
        symmetric: false,
        rsa_default: Some(Algorithm::RS256),
    };

    #[test]
    fn curves_choose_the_algorithm_and_a_contradicting_alg_is_skipped() {
        let es = json!({"kty": "EC", "crv": "P-256", "kid": "a",
            "x": "bg9UqIvz9I4BG88SdF159JXRoj4UTGcnhBiuE5DkzC0",
            "y": "N2fjOANnM33OZ2FfLYAYGMPHB50KBZEjQLY7hmW_CsI"});
        let key = read_jwk(&es, PUBLISHED).unwrap();
        assert_eq!((key.algorithm(), key.kid()), (Algorithm::ES256, Some("a")));
        let mut lying = es.clone();
        lying["alg"] = json!("ES384");
        assert!(read_jwk(&lying, PUBLISHED).is_err());
        lying["alg"] = json!("HS256");
        assert!(read_jwk(&lying, PUBLISHED).is_err());
    }

    #[test]
    fn encryption_keys_unknown_types_and_published_secrets_are_skipped() {
        for jwk in [
            json!({"kty": "RSA", "use": "enc", "n": "AQAB", "e": "AQAB"}),
            json!({"kty": "RSA", "key_ops": ["encrypt"], "n": "AQAB", "e": "AQAB"}),
            json!({"kty": "whatever"}),
            json!({"kty": "EC", "crv": "P-521", "x": "AA", "y": "AA"}),
            json!({"kty": "oct", "alg": "HS256", "k": "c2VjcmV0"}),
            json!({"kty": "RSA", "alg": "none", "n": "AQAB", "e": "AQAB"}),
        ] {
            assert!(read_jwk(&jwk, PUBLISHED).is_err(), "{jwk}");
        }
        let rsa_without_alg = json!({"kty": "RSA", "n": "AQAB", "e": "AQAB"});
        assert!(read_jwk(&rsa_without_alg, JwkPolicy::STATIC).is_err());
        assert_eq!(
            read_jwk(&rsa_without_alg, PUBLISHED).unwrap().algorithm(),
            Algorithm::RS256
        );
    }

    #[test]
    fn short_hmac_secrets_are_refused() {
        assert!(VerifyKey::hmac(Algorithm::HS256, [7u8; 31]).is_err());
        assert!(VerifyKey::hmac(Algorithm::HS256, [7u8; 32]).is_ok());
        assert!(VerifyKey::hmac(Algorithm::HS512, [7u8; 48]).is_err());
    }
}
