//! The compiled webhook policy: what the builder makes and the service reads (the signing
//! scheme and secrets, where the event id is, the once-per-event engine's settings).

use std::sync::Arc;

use http::HeaderName;

use super::signature::{HmacHeader, WebhookSecret};
use crate::clock::SharedClock;
use crate::once::Settings;

/// How deliveries are signed.
#[derive(Debug, Clone)]
pub(crate) enum Scheme {
    /// `Stripe-Signature: t=...,v1=...`, with a timestamp tolerance in seconds.
    Stripe { tolerance_secs: u64 },
    /// One HMAC header over the body.
    Hmac(HmacHeader),
}

/// Where a delivery's event id is found, for de-duplication.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EventId {
    /// A string member of the JSON body, by JSON pointer: `/id` for Stripe events.
    JsonPointer(String),
    /// A header: `X-GitHub-Delivery` for GitHub.
    Header(HeaderName),
    /// No de-duplication: every verified delivery runs the handler.
    None,
}

pub(crate) struct Config {
    pub(crate) scheme: Scheme,
    pub(crate) secrets: Vec<WebhookSecret>,
    pub(crate) event_id: EventId,
    pub(crate) scope: String,
    pub(crate) max_body_bytes: usize,
    pub(crate) clock: SharedClock,
    pub(crate) settings: Arc<Settings>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("scheme", &self.scheme)
            .field("secrets", &self.secrets.len())
            .field("event_id", &self.event_id)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}
