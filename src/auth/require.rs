//! Authorization: what a route requires of its caller ([`Require`]), and [`Access`], the helper
//! for object-level checks inside handlers (OWASP API1: may *this* caller read *this* record?).

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Method, Response, Uri};

use super::challenge::Failure;
use crate::principal::Principal;
use crate::rejection::{Rejection, RejectionContext, SharedRenderer};

/// What a route requires of its caller.
///
/// ```
/// use api_policy::auth::Require;
/// let read = Require::scopes(["patients:read"]);
/// let staff = Require::any_role(["doctor", "admin"]);
/// let both = Require::scopes(["patients:read"]).and_any_role(["doctor", "admin"]);
/// let open = Require::nothing();
/// # let _ = (read, staff, both, open);
/// ```
#[derive(Debug, Clone, Default)]
pub struct Require {
    token: bool,
    scopes: Vec<Arc<str>>,
    any_role: Vec<Arc<str>>,
}

impl Require {
    /// Nothing: anonymous requests pass as an anonymous principal. A token that is sent is still
    /// verified, and a bad one is still refused.
    #[must_use]
    pub fn nothing() -> Self {
        Self::default()
    }

    /// A valid token, whatever it grants.
    #[must_use]
    pub fn token() -> Self {
        Self {
            token: true,
            ..Self::default()
        }
    }

    /// A valid token granting every one of these scopes.
    #[must_use]
    pub fn scopes<I, T>(scopes: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<Arc<str>>,
    {
        Self::token().and_scopes(scopes)
    }

    /// A valid token granting at least one of these roles.
    #[must_use]
    pub fn any_role<I, T>(roles: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<Arc<str>>,
    {
        Self::token().and_any_role(roles)
    }

    /// Also requires every one of these scopes.
    #[must_use]
    pub fn and_scopes<I, T>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<Arc<str>>,
    {
        self.token = true;
        self.scopes.extend(scopes.into_iter().map(Into::into));
        self
    }

    /// Also requires one of these roles.
    #[must_use]
    pub fn and_any_role<I, T>(mut self, roles: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<Arc<str>>,
    {
        self.token = true;
        self.any_role.extend(roles.into_iter().map(Into::into));
        self
    }

    /// Checks a principal against the requirement.
    pub(crate) fn check(&self, principal: &Principal) -> Result<(), Failure> {
        if principal.is_anonymous() {
            return if self.token {
                Err(Failure::Missing)
            } else {
                Ok(())
            };
        }
        let missing: Vec<&str> = self
            .scopes
            .iter()
            .filter(|s| !principal.has_scope(s))
            .map(|s| &**s)
            .collect();
        if !missing.is_empty() {
            return Err(Failure::Forbidden {
                detail: Cow::Owned(format!(
                    "This request needs the scope{} {}.",
                    if missing.len() == 1 { "" } else { "s" },
                    missing.join(", ")
                )),
                scope: Some(
                    self.scopes
                        .iter()
                        .map(|s| &**s)
                        .collect::<Vec<_>>()
                        .join(" "),
                ),
            });
        }
        if !self.any_role.is_empty() && !self.any_role.iter().any(|r| principal.has_role(r)) {
            return Err(Failure::Forbidden {
                detail: Cow::Owned(format!(
                    "This request needs one of the roles {}.",
                    self.any_role
                        .iter()
                        .map(|s| &**s)
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
                scope: None,
            });
        }
        Ok(())
    }
}

/// What [`Access`] needs from the layer: how to render a denial.
#[derive(Debug)]
pub(crate) struct Denials {
    pub(crate) renderer: SharedRenderer,
    pub(crate) realm: Arc<str>,
}

/// Object-level authorization in a handler, answered exactly as the layer answers its own 403s
/// (same renderer, same challenge, gRPC-aware), with the [`Rejection`] left in the response
/// extensions for the audit layer.
///
/// Taken from a request that passed [`JwtAuthLayer`](super::JwtAuthLayer): with the `axum`
/// feature it is an extractor; otherwise [`Access::of`].
///
/// ```
/// use api_policy::auth::Access;
/// fn may_read(access: &Access, patient_id: &str) -> bool {
///     let me = access.principal();
///     me.has_role("doctor") || me.has_role("admin") || &*me.id == patient_id
/// }
/// # let _ = may_read;
/// ```
#[derive(Clone)]
pub struct Access {
    principal: Principal,
    denials: Arc<Denials>,
    method: Method,
    uri: Uri,
    content_type: HeaderMap,
    /// The stack's renderer, when the request carried one.
    stack: Option<crate::rejection::StackRenderer>,
}

impl fmt::Debug for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Access")
            .field("principal", &self.principal)
            .finish_non_exhaustive()
    }
}

impl Access {
    /// The access helper of a request that passed the layer; `None` if it did not.
    #[must_use]
    pub fn of(parts: &http::request::Parts) -> Option<Self> {
        let denials = parts.extensions.get::<Arc<Denials>>()?.clone();
        let principal = parts.extensions.get::<Principal>()?.clone();
        let mut content_type = HeaderMap::new();
        if let Some(value) = parts.headers.get(http::header::CONTENT_TYPE) {
            content_type.insert(http::header::CONTENT_TYPE, value.clone());
        }
        Some(Self {
            principal,
            denials,
            method: parts.method.clone(),
            uri: parts.uri.clone(),
            content_type,
            stack: parts.extensions.get().cloned(),
        })
    }

    /// The caller.
    #[must_use]
    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    /// `Ok` when `allowed`, else a 403 `insufficient_scope` denial carrying `detail`. An
    /// anonymous caller (optional authentication) is answered 401 instead: it has no token to be
    /// short of privileges.
    ///
    /// # Errors
    /// The [`Denied`] answer, ready to return from the handler.
    pub fn ensure(
        &self,
        allowed: bool,
        detail: impl Into<Cow<'static, str>>,
    ) -> Result<(), Denied> {
        if allowed {
            return Ok(());
        }
        let failure = if self.principal.is_anonymous() {
            Failure::Missing
        } else {
            Failure::Forbidden {
                detail: detail.into(),
                scope: None,
            }
        };
        Err(self.deny(failure))
    }

    /// `Ok` when the caller holds `scope`, else 403 with `scope` in the challenge.
    ///
    /// # Errors
    /// The [`Denied`] answer.
    pub fn require_scope(&self, scope: &str) -> Result<(), Denied> {
        Require::scopes([scope])
            .check(&self.principal)
            .map_err(|failure| self.deny(failure))
    }

    /// `Ok` when the caller holds one of `roles`, else 403.
    ///
    /// # Errors
    /// The [`Denied`] answer.
    pub fn require_any_role(&self, roles: &[&str]) -> Result<(), Denied> {
        Require::any_role(roles.iter().copied())
            .check(&self.principal)
            .map_err(|failure| self.deny(failure))
    }

    fn deny(&self, failure: Failure) -> Denied {
        let rejection = failure.rejection(&self.denials.realm);
        let context = RejectionContext::of_parts(
            &self.method,
            &self.uri,
            &self.content_type,
            self.stack.as_ref(),
        );
        let mut response = self.denials.renderer.render(&rejection, &context);
        response.extensions_mut().insert(rejection);
        Denied(Box::new(response))
    }
}

/// A rendered denial from [`Access`]: return it from the handler (with the `axum` feature it is
/// `IntoResponse`), or take the response with [`Denied::into_http_response`].
#[derive(Debug)]
pub struct Denied(Box<Response<Bytes>>);

impl Denied {
    /// The answer.
    #[must_use]
    pub fn into_http_response(self) -> Response<Bytes> {
        *self.0
    }

    /// Why: the rejection the answer was rendered from.
    #[must_use]
    pub fn rejection(&self) -> Option<&Rejection> {
        self.0.extensions().get::<Rejection>()
    }
}

impl fmt::Display for Denied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.rejection() {
            Some(rejection) => f.write_str(&rejection.detail),
            None => f.write_str("access denied"),
        }
    }
}

impl std::error::Error for Denied {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requirements_check_scopes_all_and_roles_any() {
        let nurse = Principal::user("u1")
            .with_scopes(["patients:read"])
            .with_roles(["nurse"]);
        assert!(Require::scopes(["patients:read"]).check(&nurse).is_ok());
        let both = Require::scopes(["patients:read", "patients:write"]);
        match both.check(&nurse) {
            Err(Failure::Forbidden { detail, scope }) => {
                assert_eq!(detail, "This request needs the scope patients:write.");
                assert_eq!(scope.as_deref(), Some("patients:read patients:write"));
            }
            other => panic!("{other:?}"),
        }
        assert!(Require::any_role(["doctor", "nurse"]).check(&nurse).is_ok());
        assert!(matches!(
            Require::any_role(["doctor"]).check(&nurse),
            Err(Failure::Forbidden { scope: None, .. })
        ));
        let anonymous = Principal::anonymous("anonymous");
        assert_eq!(Require::token().check(&anonymous), Err(Failure::Missing));
        assert!(Require::nothing().check(&anonymous).is_ok());
    }
}
