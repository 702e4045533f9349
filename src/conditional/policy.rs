//! The compiled conditional-requests policy: what the builder makes and the service reads (each
//! resource's rule, the bounds, the lookup of a resource's current validators).

use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;

use super::store::StoredValidators;
use crate::error::StoreError;
use crate::kit::BoxFuture;
use crate::rejection::SharedRenderer;
use crate::route::RouteMatcher;

/// A route's rule, compiled.
pub(crate) struct CompiledRule {
    pub(crate) cache_control: Option<HeaderValue>,
    pub(crate) require_preconditions: bool,
    pub(crate) fast_not_modified: bool,
}

/// Whether a resource exists now, and with which validators: what a [lookup](super::ConditionalBuilder::lookup) answers.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Current {
    /// There is no current representation.
    Missing,
    /// There is one, with these validators.
    Exists(StoredValidators),
}

/// The request's resource, as a lookup gets it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Resource {
    /// The route template, e.g. `/api/v2/appointments/{id}`.
    pub template: String,
    /// The template filled in, e.g. `/api/v2/appointments/apt_1`: the store's key.
    pub path: String,
    /// The path parameters by name.
    pub params: Vec<(String, String)>,
}

impl Resource {
    /// The path parameter `name`.
    #[must_use]
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

pub(crate) type Lookup =
    Arc<dyn Fn(Resource) -> BoxFuture<Result<Current, StoreError>> + Send + Sync>;

pub(crate) struct Config {
    pub(crate) routes: RouteMatcher<CompiledRule>,
    pub(crate) max_body_bytes: usize,
    pub(crate) validator_ttl: Duration,
    pub(crate) lease: Duration,
    pub(crate) lock_wait: Duration,
    pub(crate) lookup: Option<Lookup>,
    pub(crate) renderer: SharedRenderer,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("max_body_bytes", &self.max_body_bytes)
            .field("lookup", &self.lookup.is_some())
            .finish_non_exhaustive()
    }
}
