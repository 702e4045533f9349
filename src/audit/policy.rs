//! The compiled audit policy: what the builder makes and the service reads (the PHI routes and
//! what their records and answers hold, the buffer of a buffered layer, the counters).

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use http::{HeaderName, HeaderValue};

use super::queue::QueueHandle;
use crate::clock::SharedClock;
use crate::principal::TrustedProxies;
use crate::rejection::SharedRenderer;
use crate::route::RouteMatcher;

/// A PHI route: which path parameter names the patient or record, and the `Cache-Control` its
/// answers get when they state none.
#[derive(Debug, Clone)]
pub(crate) struct PhiRoute {
    pub(crate) subject_param: Option<String>,
    pub(crate) cache_control: Option<HeaderValue>,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) written: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) dropped: AtomicU64,
}

/// What is recorded, and of which requests: the PHI routes, and the query parameters whose
/// values a record may keep.
#[derive(Debug)]
pub(crate) struct Coverage {
    pub(crate) routes: RouteMatcher<PhiRoute>,
    pub(crate) allowed_query: Vec<String>,
}

pub(crate) struct Config {
    pub(crate) coverage: Coverage,
    pub(crate) request_id: HeaderName,
    pub(crate) proxies: TrustedProxies,
    pub(crate) clock: SharedClock,
    pub(crate) renderer: SharedRenderer,
    /// The queue of a buffered layer (records as their canonical bytes), and whether a full
    /// queue drops rather than waits.
    pub(crate) buffer: Option<(QueueHandle, bool)>,
    pub(crate) counters: Arc<Counters>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("buffered", &self.buffer.is_some())
            .finish_non_exhaustive()
    }
}
