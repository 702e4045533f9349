//! What the gRPC and hyper examples share: their command-line flags and their three policies
//! (audit trail, JWT auth with the demo's tokens, a per-caller rate limit).

use std::path::PathBuf;
use std::time::Duration;

use api_policy::audit::{AuditLayer, FileSink};
use api_policy::auth::{Algorithm, JwtAuthLayer, Require, VerifyKey};
use api_policy::backend::MemoryBackend;
use api_policy::rate_limit::{MemoryRateLimitStore, Quota, RateLimitLayer};

#[allow(dead_code)]
#[path = "../mint_token.rs"]
mod mint_token;

/// The value after `--name` on the command line.
pub fn flag(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

/// The policies of an example, outer to inner.
pub struct Policies {
    pub audit: AuditLayer<FileSink>,
    pub auth: JwtAuthLayer,
    pub limits: RateLimitLayer<MemoryRateLimitStore>,
}

/// Audit (to `--audit-log`, or `default_log`) every request matching `phi` (its `subject`
/// parameter naming the patient, when given), require a doctor's or admin's demo token on
/// `protected`, and allow each caller 5 requests a minute.
pub fn policies(
    phi: &str,
    subject: Option<&str>,
    protected: &str,
    default_log: &str,
) -> Result<Policies, Box<dyn std::error::Error>> {
    let audit_log = PathBuf::from(flag("--audit-log").unwrap_or_else(|| default_log.into()));
    let audit = AuditLayer::builder(FileSink::builder(&audit_log).open()?);
    let audit = match subject {
        Some(param) => audit.phi_route_with_subject(phi, param),
        None => audit.phi_route(phi),
    }
    .build()?;
    let auth = JwtAuthLayer::builder()
        .key(VerifyKey::hmac(
            Algorithm::HS256,
            mint_token::DEV_SECRET.as_bytes(),
        )?)
        .issuer([mint_token::DEFAULT_ISSUER])
        .audience([mint_token::DEFAULT_AUDIENCE])
        .route(protected, Require::any_role(["doctor", "admin"]))
        .build()?;
    let limits = RateLimitLayer::builder(MemoryRateLimitStore::new(&MemoryBackend::new()))
        .tier("default", Quota::new(5, Duration::from_secs(60)))
        .build()?;
    Ok(Policies {
        audit,
        auth,
        limits,
    })
}
