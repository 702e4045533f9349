//! Why authentication failed, and the RFC 6750 answer for each reason: status, `error` code and
//! the `WWW-Authenticate` challenge.

use std::borrow::Cow;
use std::fmt::Write as _;

use http::header::{RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderValue, StatusCode};

use crate::rejection::Rejection;

/// Why a request was not let through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    /// No bearer credentials: 401 without an error code (RFC 6750 section 3.1).
    Missing,
    /// Credentials that cannot be read: 400 `invalid_request`.
    Malformed(&'static str),
    /// A token that is not acceptable: 401 `invalid_token`.
    Invalid(Cow<'static, str>),
    /// A good token without the privileges asked for: 403 `insufficient_scope`, with the scopes
    /// that would do, if scopes are what is missing.
    Forbidden {
        detail: Cow<'static, str>,
        scope: Option<String>,
    },
    /// No keys to verify with, or the revocation list cannot answer: 503.
    Unavailable {
        error: &'static str,
        detail: &'static str,
        retry_after_secs: u64,
    },
}

impl Failure {
    pub(crate) fn invalid(detail: &'static str) -> Self {
        Self::Invalid(Cow::Borrowed(detail))
    }

    /// The rejection for this failure, challenging for `realm`.
    pub(crate) fn rejection(self, realm: &str) -> Rejection {
        let (status, error, detail, scope) = match self {
            Failure::Missing => {
                let rejection = Rejection::new(
                    StatusCode::UNAUTHORIZED,
                    "unauthenticated",
                    "This request needs a bearer token.",
                );
                return with_challenge(rejection, format!("Bearer realm=\"{realm}\""));
            }
            Failure::Malformed(detail) => (
                StatusCode::BAD_REQUEST,
                "invalid_request",
                Cow::Borrowed(detail),
                None,
            ),
            Failure::Invalid(detail) => (StatusCode::UNAUTHORIZED, "invalid_token", detail, None),
            Failure::Forbidden { detail, scope } => {
                (StatusCode::FORBIDDEN, "insufficient_scope", detail, scope)
            }
            Failure::Unavailable {
                error,
                detail,
                retry_after_secs,
            } => {
                return Rejection::new(StatusCode::SERVICE_UNAVAILABLE, error, detail)
                    .with_header(RETRY_AFTER, HeaderValue::from(retry_after_secs.max(1)));
            }
        };
        let mut challenge = format!(
            "Bearer realm=\"{realm}\", error=\"{error}\", error_description=\"{}\"",
            description(&detail)
        );
        if let Some(scope) = &scope {
            let _ = write!(challenge, ", scope=\"{}\"", description(scope));
        }
        with_challenge(Rejection::new(status, error, detail), challenge)
    }
}

fn with_challenge(rejection: Rejection, challenge: String) -> Rejection {
    match HeaderValue::try_from(challenge) {
        Ok(value) => rejection.with_header(WWW_AUTHENTICATE, value),
        // Every part is sanitised or checked at build time; a value http still refuses is left
        // out rather than failing the answer.
        Err(_) => rejection,
    }
}

/// `error_description` and `scope` may hold only `%x20-21 / %x23-5B / %x5D-7E` (RFC 6750
/// section 3): no quote, no backslash, nothing outside printable ASCII.
fn description(text: &str) -> Cow<'_, str> {
    let allowed = |c: char| matches!(c, ' '..='~') && c != '"' && c != '\\';
    if text.chars().all(allowed) {
        Cow::Borrowed(text)
    } else {
        Cow::Owned(
            text.chars()
                .map(|c| if allowed(c) { c } else { '?' })
                .collect(),
        )
    }
}

/// Whether `realm` can go into a quoted string as it is.
pub(crate) fn is_valid_realm(realm: &str) -> bool {
    !realm.is_empty() && matches!(description(realm), Cow::Borrowed(_))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn challenge(failure: Failure) -> (StatusCode, String, String) {
        let r = failure.rejection("api");
        let header = r
            .headers
            .get(WWW_AUTHENTICATE)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        (r.status, r.error.to_string(), header)
    }

    #[test]
    fn each_failure_has_its_rfc_6750_answer() {
        assert_eq!(
            challenge(Failure::Missing),
            (
                StatusCode::UNAUTHORIZED,
                "unauthenticated".into(),
                "Bearer realm=\"api\"".into()
            )
        );
        assert_eq!(
            challenge(Failure::Malformed("Two headers.")),
            (
                StatusCode::BAD_REQUEST,
                "invalid_request".into(),
                "Bearer realm=\"api\", error=\"invalid_request\", error_description=\"Two headers.\"".into()
            )
        );
        assert_eq!(
            challenge(Failure::Invalid("The \"token\" expired\\ \u{e9}".into())),
            (
                StatusCode::UNAUTHORIZED,
                "invalid_token".into(),
                "Bearer realm=\"api\", error=\"invalid_token\", error_description=\"The ?token? expired? ?\"".into()
            )
        );
        assert_eq!(
            challenge(Failure::Forbidden {
                detail: "Needs more.".into(),
                scope: Some("patients:read patients:write".into())
            }),
            (
                StatusCode::FORBIDDEN,
                "insufficient_scope".into(),
                "Bearer realm=\"api\", error=\"insufficient_scope\", error_description=\"Needs more.\", scope=\"patients:read patients:write\"".into()
            )
        );
        let unavailable = Failure::Unavailable {
            error: "auth_unavailable",
            detail: "No keys.",
            retry_after_secs: 0,
        }
        .rejection("api");
        assert_eq!(unavailable.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(unavailable.headers[RETRY_AFTER], "1");
        assert!(unavailable.headers.get(WWW_AUTHENTICATE).is_none());
    }

    #[test]
    fn realms_must_fit_a_quoted_string() {
        assert!(is_valid_realm("api.example.com"));
        assert!(!is_valid_realm("a\"b") && !is_valid_realm("") && !is_valid_realm("a\\b"));
    }
}
