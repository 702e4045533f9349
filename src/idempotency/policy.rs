//! The compiled idempotency policy: what the builder makes and the service reads (which
//! requests must, may or need not carry a key, and the once-per-key engine's settings).

use std::sync::Arc;

use http::Method;

use crate::once::Settings;
use crate::principal::KeyExtractor;
use crate::route::RouteMatcher;

/// Whether requests on a route must, may or need not carry an `Idempotency-Key`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyRule {
    /// Without a key: 400 `idempotency_key_missing`.
    Required,
    /// Without a key the request passes through and nothing is stored.
    Optional,
    /// The header is not looked at.
    Ignored,
}

pub(crate) struct Config {
    pub(crate) methods: Vec<Method>,
    pub(crate) routes: RouteMatcher<KeyRule>,
    pub(crate) default_rule: KeyRule,
    pub(crate) max_request_bytes: usize,
    pub(crate) extractor: KeyExtractor,
    pub(crate) settings: Arc<Settings>,
}

impl Config {
    /// The rule for a request: ignored for methods the layer does not cover, else the first
    /// matching route's, else the default.
    pub(crate) fn rule(&self, method: &Method, path: &str) -> KeyRule {
        if !self.methods.contains(method) {
            return KeyRule::Ignored;
        }
        self.routes
            .find(method, path)
            .map_or(self.default_rule, |m| *m.value)
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("methods", &self.methods)
            .field("default_rule", &self.default_rule)
            .field("terms", &self.settings.terms)
            .finish_non_exhaustive()
    }
}
