//! Verifying one token against the configured keys and claim rules.

use std::borrow::Cow;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Header;
use jsonwebtoken::errors::ErrorKind;
use serde_json::Value;

use super::cache::Verified;
use super::challenge::Failure;
use super::claims::{RawClaims, numeric_date, whole_secs};
use super::keys::VerifyKey;
use super::policy::Config;
use super::token::TokenSource;

/// A `jti` longer than this is refused when revocation is on: it becomes a store key.
const MAX_JTI_LEN: usize = 256;

/// What verification with the keys at hand came to.
pub(crate) enum Outcome {
    Done(Result<Arc<Verified>, Failure>),
    /// The token names a key that the keys of this generation lack (or we hold none yet):
    /// worth one refetch.
    NeedKeys {
        #[cfg_attr(not(feature = "jwks"), allow(dead_code))]
        generation: u64,
    },
}

impl Config {
    /// Verifies the bearer credentials `raw` with the keys held now; `may_fetch` says whether an
    /// unknown key may be answered with [`Outcome::NeedKeys`] rather than a refusal.
    pub(crate) fn verify_now(&self, raw: &[u8], may_fetch: bool) -> Outcome {
        let now_us = self.clock.now_micros();
        let published = self.published();
        let epoch = published.epoch();
        if let Some(cache) = &self.cache
            && let Some(verified) = cache.get(raw, epoch, now_us)
        {
            // Byte for byte a token verified before (a 128-bit MAC match), so well-formed too.
            return Outcome::Done(Ok(verified));
        }
        let token = match TokenSource::validate(raw) {
            Ok(token) => token,
            Err(why) => return Outcome::Done(Err(Failure::Malformed(why))),
        };
        let header = match jsonwebtoken::decode_header(token) {
            Ok(header) => header,
            Err(_) => {
                return Outcome::Done(Err(Failure::invalid(
                    "The token is not a well-formed JWS, or its algorithm is not supported.",
                )));
            }
        };
        if let Err(failure) = self.check_header(&header) {
            return Outcome::Done(Err(failure));
        }
        let kid = header.kid.as_deref();
        let mut tried = false;
        let mut last = Failure::invalid("The token's signature does not verify.");
        let candidates = self.keys.iter().chain(published.keys());
        for key in candidates.filter(|k| k.fits(kid, header.alg)) {
            tried = true;
            match self.verify_with(token, key, now_us) {
                Ok(verified) => {
                    let verified = Arc::new(verified);
                    if let Some(cache) = &self.cache {
                        cache.put(raw, epoch, &verified, now_us);
                    }
                    return Outcome::Done(Ok(verified));
                }
                // Another key may still verify it when this one was only a guess: the token or the
                // key has no `kid`.
                Err(Failure::Invalid(detail))
                    if (kid.is_none() || key.kid().is_none()) && is_signature(&detail) =>
                {
                    last = Failure::Invalid(detail);
                }
                Err(failure) => return Outcome::Done(Err(failure)),
            }
        }
        if tried {
            return Outcome::Done(Err(last));
        }
        let mut all = self.keys.iter().chain(published.keys());
        if kid.is_some() && all.any(|k| k.kid() == kid) {
            // The key exists but verifies another algorithm: no fetch will change that.
            return Outcome::Done(Err(Failure::invalid(
                "The token's algorithm does not match its key.",
            )));
        }
        if may_fetch && self.fetches_keys() {
            return Outcome::NeedKeys {
                generation: published.generation(),
            };
        }
        if self.keys.is_empty() && published.keys().is_empty() {
            return Outcome::Done(Err(Failure::Unavailable {
                error: "auth_unavailable",
                detail: "No keys to verify tokens with are available yet; retry shortly.",
                retry_after_secs: self.retry_after_secs(),
            }));
        }
        Outcome::Done(Err(Failure::invalid(if kid.is_some() {
            "The token names a key this API does not know."
        } else {
            "No key of the token's algorithm is known."
        })))
    }

    fn check_header(&self, header: &Header) -> Result<(), Failure> {
        if !self.algorithms.contains(&header.alg) {
            return Err(Failure::Invalid(Cow::Owned(format!(
                "The algorithm {:?} is not accepted here.",
                header.alg
            ))));
        }
        // RFC 7515 section 4.1.11: an extension we do not understand must not be ignored.
        if header.crit.is_some() {
            return Err(Failure::invalid(
                "The token marks header extensions critical that this API does not understand.",
            ));
        }
        if let Some(expected) = &self.typ {
            let typ = header.typ.as_deref().unwrap_or("");
            let bare = typ
                .get(..12)
                .filter(|p| p.eq_ignore_ascii_case("application/"))
                .map_or(typ, |_| &typ[12..]);
            if !bare.eq_ignore_ascii_case(expected) {
                return Err(Failure::Invalid(Cow::Owned(format!(
                    "The token's type is not {expected}."
                ))));
            }
        }
        Ok(())
    }

    /// The signature check and the claim checks. The header was read once by the caller; the
    /// payload is parsed once here (`jsonwebtoken::decode` would read the header again and the
    /// payload twice).
    fn verify_with(&self, token: &str, key: &VerifyKey, now_us: u64) -> Result<Verified, Failure> {
        let malformed = || Failure::invalid("The token is not well-formed base64url JSON.");
        let (message, signature) = token.rsplit_once('.').ok_or_else(malformed)?;
        let (_, payload) = message.split_once('.').ok_or_else(malformed)?;
        let verified = jsonwebtoken::crypto::verify(
            signature,
            message.as_bytes(),
            key.decoding_key(),
            key.algorithm(),
        )
        .map_err(|e| describe(e.kind()))?;
        if !verified {
            return Err(Failure::invalid(BAD_SIGNATURE));
        }
        let payload = URL_SAFE_NO_PAD.decode(payload).map_err(|_| malformed())?;
        let claims: RawClaims = serde_json::from_slice(&payload).map_err(|_| malformed())?;
        self.check_issuer_and_audience(&claims)?;
        let now = now_us / 1_000_000;
        let date = |name: &'static str| {
            numeric_date(&claims, name).map_err(|()| {
                Failure::Invalid(Cow::Owned(format!("The `{name}` claim is not a number.")))
            })
        };
        let (exp, nbf, iat) = (date("exp")?, date("nbf")?, date("iat")?);
        // Rounded so that a fraction never lets a token in early or keeps it in late.
        let exp_down = exp.map(|e| whole_secs(e, false));
        match exp_down {
            Some(exp) if now >= exp.saturating_add(self.leeway) => {
                return Err(Failure::invalid("The token has expired."));
            }
            None if self.require_exp => {
                return Err(Failure::invalid("The token has no expiry (`exp`)."));
            }
            _ => {}
        }
        if nbf.is_some_and(|nbf| now.saturating_add(self.leeway) < whole_secs(nbf, true)) {
            return Err(Failure::invalid("The token is not valid yet (`nbf`)."));
        }
        if let Some(max) = self.max_lifetime {
            let (Some(exp), Some(iat)) = (exp, iat) else {
                return Err(Failure::invalid(
                    "The token must carry `iat` and `exp` to show its lifetime.",
                ));
            };
            if whole_secs(exp, true).saturating_sub(whole_secs(iat, false)) > max {
                return Err(Failure::Invalid(Cow::Owned(format!(
                    "The token's lifetime exceeds the {max} s this API accepts."
                ))));
            }
        }
        if let Some(missing) = self
            .required_claims
            .iter()
            .find(|c| !claims.contains_key(*c))
        {
            return Err(Failure::Invalid(Cow::Owned(format!(
                "The token lacks the `{missing}` claim."
            ))));
        }
        let jti = match claims.get("jti").and_then(|v| v.as_str()) {
            Some(jti) if self.revocation.is_some() && jti.len() > MAX_JTI_LEN => {
                return Err(Failure::invalid("The token's `jti` is too long."));
            }
            Some(jti) => Some(Arc::from(jti)),
            None => None,
        };
        let principal = self.names.principal(&claims).map_err(Failure::invalid)?;
        let claims = (self.claims_type.decode)(claims).map_err(|e| {
            Failure::Invalid(Cow::Owned(format!(
                "The token's claims do not have the expected shape: {e}."
            )))
        })?;
        Ok(Verified {
            principal,
            claims,
            jti,
            expires_us: exp_down.map(|e| e.saturating_mul(1_000_000)),
        })
    }

    /// `iss` must be one of the trusted issuers and `aud` (a string or an array) name one of
    /// ours, each present whenever a list is configured (an empty list waives the check).
    fn check_issuer_and_audience(&self, claims: &RawClaims) -> Result<(), Failure> {
        if !self.issuers.is_empty() {
            let issuer = claims.get("iss").and_then(Value::as_str);
            if !issuer.is_some_and(|iss| self.issuers.iter().any(|i| i == iss)) {
                return Err(Failure::invalid(
                    "The token was issued by an issuer this API does not trust.",
                ));
            }
        }
        if !self.audiences.is_empty() {
            let ours = |aud: &str| self.audiences.iter().any(|a| a == aud);
            let fits = match claims.get("aud") {
                Some(Value::String(aud)) => ours(aud),
                Some(Value::Array(auds)) => auds.iter().filter_map(Value::as_str).any(ours),
                _ => false,
            };
            if !fits {
                return Err(Failure::invalid("The token is meant for another audience."));
            }
        }
        Ok(())
    }
}

const BAD_SIGNATURE: &str = "The token's signature does not verify.";

fn is_signature(detail: &str) -> bool {
    detail == BAD_SIGNATURE
}

/// A description for each way `jsonwebtoken` refuses a token; the time checks are ours.
fn describe(kind: &ErrorKind) -> Failure {
    Failure::invalid(match kind {
        ErrorKind::InvalidSignature => BAD_SIGNATURE,
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
            "The token's algorithm does not match its key."
        }
        ErrorKind::Base64(_) | ErrorKind::Json(_) | ErrorKind::Utf8(_) => {
            "The token is not well-formed base64url JSON."
        }
        ErrorKind::InvalidEcdsaKey | ErrorKind::InvalidEddsaKey | ErrorKind::InvalidRsaKey(_) => {
            "The token's signature does not fit its key."
        }
        _ => "The token is invalid.",
    })
}
