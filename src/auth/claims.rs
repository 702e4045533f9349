//! What a verified token says: the [`Principal`] built from configurable claim names, the
//! registered time claims, and the typed [`Claims<T>`] handed to handlers.

use std::any::{Any, TypeId};
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use http::Extensions;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::principal::Principal;

/// The claims of a token as JSON, the default claims type.
pub type RawClaims = Map<String, Value>;

/// A verified token's claims, deserialised into `T` and put in the request extensions by
/// [`JwtAuthLayer`](super::JwtAuthLayer). `T` is [`RawClaims`] unless the builder's
/// [`claims`](super::JwtAuthBuilder::claims) chose another type.
///
/// With the `axum` feature, `Claims<T>` is an extractor (401 without a principal).
pub struct Claims<T>(pub Arc<T>);

impl<T> Clone for Claims<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<T: fmt::Debug> fmt::Debug for Claims<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Claims").field(&self.0).finish()
    }
}

impl<T> Deref for Claims<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// Which claims fill the [`Principal`].
///
/// Defaults: subject `sub`; tier `tier`; scopes `scope` and `scp` (a space-separated string or an
/// array); roles `roles` and `role` (likewise); session `sid`.
#[derive(Debug, Clone)]
pub struct ClaimNames {
    /// The principal's id. A token without it is refused.
    pub subject: String,
    /// The rate-limit tier.
    pub tier: Option<String>,
    /// Claims whose values are scopes.
    pub scopes: Vec<String>,
    /// Claims whose values are roles.
    pub roles: Vec<String>,
    /// The session id.
    pub session: Option<String>,
}

impl Default for ClaimNames {
    fn default() -> Self {
        Self {
            subject: "sub".into(),
            tier: Some("tier".into()),
            scopes: vec!["scope".into(), "scp".into()],
            roles: vec!["roles".into(), "role".into()],
            session: Some("sid".into()),
        }
    }
}

impl ClaimNames {
    /// The principal these claims describe. A token whose `client_id` equals its subject was
    /// issued to a client for itself (RFC 9068 section 2.2), so its principal is a service.
    pub(crate) fn principal(&self, claims: &RawClaims) -> Result<Principal, &'static str> {
        let subject = claims
            .get(&self.subject)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or("The token names no subject.")?;
        let service = claims.get("client_id").and_then(Value::as_str) == Some(subject);
        let mut principal = if service {
            Principal::service(subject)
        } else {
            Principal::user(subject)
        };
        if let Some(tier) = self.text(claims, self.tier.as_deref()) {
            principal = principal.with_tier(tier);
        }
        if let Some(session) = self.text(claims, self.session.as_deref()) {
            principal = principal.with_session(session);
        }
        Ok(principal
            .with_scopes(words(claims, &self.scopes))
            .with_roles(words(claims, &self.roles)))
    }

    fn text<'a>(&self, claims: &'a RawClaims, name: Option<&str>) -> Option<&'a str> {
        claims.get(name?).and_then(Value::as_str)
    }
}

/// Every word of the named claims: space-separated strings (`scope`) and arrays of strings
/// (`scp` in some issuers, `roles`) alike.
fn words(claims: &RawClaims, names: &[String]) -> Vec<Arc<str>> {
    let mut out: Vec<Arc<str>> = Vec::new();
    for value in names.iter().filter_map(|n| claims.get(n)) {
        match value {
            Value::String(s) => out.extend(s.split_ascii_whitespace().map(Arc::from)),
            Value::Array(items) => out.extend(
                items
                    .iter()
                    .filter_map(Value::as_str)
                    .flat_map(str::split_ascii_whitespace)
                    .map(Arc::from),
            ),
            _ => {}
        }
    }
    out
}

/// A NumericDate claim (`exp`, `nbf`, `iat`): seconds, possibly fractional (RFC 7519 section 2).
/// `Err` when present but not a finite, non-negative number.
pub(crate) fn numeric_date(claims: &RawClaims, name: &str) -> Result<Option<f64>, ()> {
    match claims.get(name) {
        None => Ok(None),
        Some(value) => match value.as_f64() {
            Some(secs) if secs >= 0.0 && secs.is_finite() => Ok(Some(secs)),
            _ => Err(()),
        },
    }
}

/// Whole seconds, rounded down (`floor`) or up; each check rounds the way that never widens
/// what it accepts.
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
pub(crate) fn whole_secs(secs: f64, up: bool) -> u64 {
    // Non-negative and finite (see `numeric_date`); `as` saturates beyond u64.
    (if up { secs.ceil() } else { secs.floor() }) as u64
}

/// Claims after verification, in whatever type the layer was configured with.
pub(crate) type ErasedClaims = Arc<dyn Any + Send + Sync>;

/// How the layer turns raw claims into the configured type and puts it in the extensions, chosen
/// once at build time so the layer itself is not generic.
#[derive(Clone, Copy)]
pub(crate) struct ClaimsType {
    pub(crate) name: &'static str,
    pub(crate) decode: fn(RawClaims) -> Result<ErasedClaims, serde_json::Error>,
    pub(crate) insert: fn(&mut Extensions, &ErasedClaims),
}

impl fmt::Debug for ClaimsType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

impl ClaimsType {
    pub(crate) fn of<T: DeserializeOwned + Send + Sync + 'static>() -> Self {
        let decode = if TypeId::of::<T>() == TypeId::of::<RawClaims>() {
            decode_raw
        } else {
            decode_typed::<T>
        };
        Self {
            name: std::any::type_name::<T>(),
            decode,
            insert: insert_typed::<T>,
        }
    }
}

fn decode_raw(claims: RawClaims) -> Result<ErasedClaims, serde_json::Error> {
    Ok(Arc::new(claims))
}

fn decode_typed<T: DeserializeOwned + Send + Sync + 'static>(
    claims: RawClaims,
) -> Result<ErasedClaims, serde_json::Error> {
    Ok(Arc::new(serde_json::from_value::<T>(Value::Object(
        claims,
    ))?))
}

fn insert_typed<T: Send + Sync + 'static>(extensions: &mut Extensions, claims: &ErasedClaims) {
    if let Ok(claims) = claims.clone().downcast::<T>() {
        extensions.insert(Claims(claims));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::principal::PrincipalKind;
    use serde_json::json;

    fn claims(value: Value) -> RawClaims {
        match value {
            Value::Object(map) => map,
            _ => unreachable!(),
        }
    }

    #[test]
    fn scopes_and_roles_come_from_strings_and_arrays() {
        let names = ClaimNames::default();
        let p = names
            .principal(&claims(json!({
                "sub": "pat_1", "tier": "pro", "sid": "s1",
                "scope": "patients:read  appointments:write", "scp": ["extra"],
                "role": "patient", "roles": ["a", "b"]
            })))
            .unwrap();
        assert_eq!(&*p.id, "pat_1");
        assert_eq!(p.kind, PrincipalKind::User);
        assert_eq!(p.tier.as_deref(), Some("pro"));
        assert_eq!(p.session_id.as_deref(), Some("s1"));
        assert!(p.has_scope("patients:read") && p.has_scope("appointments:write"));
        assert!(p.has_scope("extra"));
        assert!(p.has_role("patient") && p.has_role("a") && p.has_role("b"));
        assert!(!p.has_scope("patient"));
    }

    #[test]
    fn a_client_token_is_a_service_and_a_token_without_subject_is_refused() {
        let names = ClaimNames::default();
        let p = names
            .principal(&claims(json!({"sub": "billing", "client_id": "billing"})))
            .unwrap();
        assert_eq!(p.kind, PrincipalKind::Service);
        assert!(names.principal(&claims(json!({"sub": ""}))).is_err());
        assert!(names.principal(&claims(json!({"sub": 7}))).is_err());
    }

    #[test]
    fn numeric_dates_accept_fractions_and_refuse_garbage() {
        let c = claims(json!({"a": 5, "b": 5.9, "c": "5", "d": -1}));
        assert_eq!(numeric_date(&c, "a"), Ok(Some(5.0)));
        assert_eq!(numeric_date(&c, "b"), Ok(Some(5.9)));
        assert_eq!(numeric_date(&c, "c"), Err(()));
        assert_eq!(numeric_date(&c, "d"), Err(()));
        assert_eq!(numeric_date(&c, "zzz"), Ok(None));
        assert_eq!((whole_secs(5.9, false), whole_secs(5.1, true)), (5, 6));
        assert_eq!(whole_secs(1e30, true), u64::MAX);
    }
}
