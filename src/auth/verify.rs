//! Verifying one token against the configured keys and claim rules.

use std::borrow::Cow;
use std::sync::Arc;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Header, Validation};

use super::cache::Verified;
use super::challenge::Failure;
use super::claims::{RawClaims, numeric_date, whole_secs};
use super::keys::VerifyKey;
use super::layer::Config;
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

    fn verify_with(&self, token: &str, key: &VerifyKey, now_us: u64) -> Result<Verified, Failure> {
        let validation = self.validation(key.algorithm());
        let data = jsonwebtoken::decode::<RawClaims>(token, key.decoding_key(), validation)
            .map_err(|e| describe(e.kind()))?;
        let claims = data.claims;
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

    fn validation(&self, algorithm: Algorithm) -> &Validation {
        self.validations
            .iter()
            .find(|(a, _)| *a == algorithm)
            .map_or(&self.validations[0].1, |(_, v)| v)
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
        ErrorKind::InvalidIssuer => "The token was issued by an issuer this API does not trust.",
        ErrorKind::InvalidAudience => "The token is meant for another audience.",
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
            "The token's algorithm does not match its key."
        }
        ErrorKind::MissingRequiredClaim(_) => "The token lacks a required claim.",
        ErrorKind::InvalidClaimFormat(_) => "A registered claim of the token has the wrong type.",
        ErrorKind::Base64(_) | ErrorKind::Json(_) | ErrorKind::Utf8(_) => {
            "The token is not well-formed base64url JSON."
        }
        ErrorKind::InvalidEcdsaKey | ErrorKind::InvalidEddsaKey | ErrorKind::InvalidRsaKey(_) => {
            "The token's signature does not fit its key."
        }
        _ => "The token is invalid.",
    })
}
