//! The JWT layer over real stacks: an axum Router driven in-process, real keys, real JWKS
//! documents served over loopback HTTP, and real Redis for the shared revocation list.

#[path = "../common/mod.rs"]
mod common;

// Shared by the sections: the test keys and tokens, and the app with its request helpers.
mod app;
mod tokens;

// One module per section.
mod authorization;
mod configuration;
mod jwks;
mod rate_limit;
mod revocation;
mod rfc6750;
