//! What a request is to the layer: its preconditions, and the resource route it targets.

use http::HeaderValue;

use super::policy::Resource;
use super::precondition::Preconditions;

/// What a request is to the layer.
pub(super) struct Plan {
    pub(super) preconditions: Preconditions,
    pub(super) target: Option<Target>,
}

/// A request to a resource route.
pub(super) struct Target {
    pub(super) resource: Resource,
    pub(super) fast_not_modified: bool,
    pub(super) cache_control: Option<HeaderValue>,
    pub(super) require_preconditions: bool,
}
