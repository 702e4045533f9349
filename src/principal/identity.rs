//! The [`Principal`]: who a caller is, made once and shared by every layer that reads it.

use std::fmt;
use std::sync::Arc;

/// What kind of caller a [`Principal`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PrincipalKind {
    /// A person, or a token issued on a person's behalf.
    User,
    /// A machine client: an API key or a client-credentials token.
    Service,
    /// Nobody in particular: an unauthenticated caller.
    Anonymous,
}

/// An authenticated (or explicitly anonymous) caller.
///
/// Cheap to clone: one reference count for the whole. Its fields are those of
/// [`PrincipalFields`], read through it (`principal.id`, `principal.tier`); the builders set them.
#[derive(Clone, PartialEq, Eq)]
pub struct Principal(Arc<PrincipalFields>);

/// What a [`Principal`] is made of.
///
/// A principal is cloned by every layer that reads it, so its fields share one allocation and
/// one count rather than one count each.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PrincipalFields {
    /// Stable identifier: the token subject or the API key's id (never the secret key itself).
    pub id: Arc<str>,
    /// User, service or anonymous.
    pub kind: PrincipalKind,
    /// Plan or tier name that picks a rate-limit quota, e.g. `free` or `pro`.
    pub tier: Option<Arc<str>>,
    /// Granted scopes (OAuth `scope`/`scp`).
    pub scopes: Arc<[Arc<str>]>,
    /// Granted roles (a `roles` or `role` claim, or an API key's roles).
    pub roles: Arc<[Arc<str>]>,
    /// Session identifier, where the credential carries one.
    pub session_id: Option<Arc<str>>,
    /// The caller's storage key (`s:<id>`), made once with the principal: every rate-limit
    /// decision needs it, and an API key's or a cached token's principal serves many requests.
    pub(super) storage_key: Arc<str>,
}

impl std::ops::Deref for Principal {
    type Target = PrincipalFields;

    fn deref(&self) -> &PrincipalFields {
        &self.0
    }
}

impl fmt::Debug for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The fields' own form: a field added there is never left out here.
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl Principal {
    fn new(id: impl Into<Arc<str>>, kind: PrincipalKind) -> Self {
        let id = id.into();
        let mut storage_key = String::with_capacity(2 + id.len());
        storage_key.push_str(kind_prefix(kind));
        storage_key.push_str(&id);
        Self(Arc::new(PrincipalFields {
            storage_key: storage_key.into(),
            id,
            kind,
            tier: None,
            scopes: Arc::from([]),
            roles: Arc::from([]),
            session_id: None,
        }))
    }

    /// The fields, to change; copied first only if another clone shares them.
    fn fields_mut(&mut self) -> &mut PrincipalFields {
        Arc::make_mut(&mut self.0)
    }

    /// A person.
    #[must_use]
    pub fn user(id: impl Into<Arc<str>>) -> Self {
        Self::new(id, PrincipalKind::User)
    }

    /// A machine client.
    #[must_use]
    pub fn service(id: impl Into<Arc<str>>) -> Self {
        Self::new(id, PrincipalKind::Service)
    }

    /// An unauthenticated caller, known only by `id` (for instance its IP address).
    #[must_use]
    pub fn anonymous(id: impl Into<Arc<str>>) -> Self {
        Self::new(id, PrincipalKind::Anonymous)
    }

    /// Sets the tier.
    #[must_use]
    pub fn with_tier(mut self, tier: impl Into<Arc<str>>) -> Self {
        self.fields_mut().tier = Some(tier.into());
        self
    }

    /// Sets the scopes.
    #[must_use]
    pub fn with_scopes<I, T>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<Arc<str>>,
    {
        self.fields_mut().scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the roles.
    #[must_use]
    pub fn with_roles<I, T>(mut self, roles: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<Arc<str>>,
    {
        self.fields_mut().roles = roles.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the session identifier.
    #[must_use]
    pub fn with_session(mut self, session_id: impl Into<Arc<str>>) -> Self {
        self.fields_mut().session_id = Some(session_id.into());
        self
    }

    /// Whether the principal holds `scope`.
    #[must_use]
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| &**s == scope)
    }

    /// Whether the principal holds `role`.
    #[must_use]
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| &**r == role)
    }

    /// Whether this is an anonymous caller.
    #[must_use]
    pub fn is_anonymous(&self) -> bool {
        self.kind == PrincipalKind::Anonymous
    }
}

fn kind_prefix(kind: PrincipalKind) -> &'static str {
    match kind {
        PrincipalKind::User => "u:",
        PrincipalKind::Service => "s:",
        PrincipalKind::Anonymous => "a:",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clone_changed_by_a_builder_leaves_the_original_alone() {
        let original = Principal::user("u1")
            .with_tier("free")
            .with_roles(["nurse"]);
        let changed = original.clone().with_tier("pro");
        assert_eq!(original.tier.as_deref(), Some("free"));
        assert_eq!(changed.tier.as_deref(), Some("pro"));
        assert_eq!((&*changed.id, changed.has_role("nurse")), ("u1", true));
        assert_ne!(original, changed);
        assert_eq!(original, original.clone());
    }
}
