//! What the gRPC and hyper examples share: their command-line flags, their three policies
//! (audit trail, JWT auth with the demo's tokens, a per-caller rate limit) and how they serve
//! (`serving.rs`, which the demo server uses too).

use std::path::PathBuf;
use std::time::Duration;

use api_policy::audit::{AuditLayer, FileSink};
use api_policy::auth::{Algorithm, JwtAuthLayer, Require, VerifyKey};
use api_policy::backend::MemoryBackend;
use api_policy::rate_limit::{MemoryRateLimitStore, Quota, RateLimitLayer};

#[allow(dead_code)]
#[path = "../mint_token.rs"]
mod mint_token;

pub mod serving;

use serving::Limits;

/// The value after `--name` on the command line.
pub fn flag(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

/// Logs to stderr: warnings (a failed `accept`, a store down) and errors, or what `RUST_LOG`
/// asks for.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// The connection limits from `--header-read-timeout SECS` (default 10), `--keep-alive-timeout
/// SECS` (default 5; on HTTP/1 the header-read timeout also bounds the wait for the next
/// request), `--max-header-bytes BYTES` (default 65536, at least 8192) and `--max-connections N`
/// (default 1024, or fewer under a low `ulimit -n`).
pub fn limits() -> Result<Limits, Box<dyn std::error::Error>> {
    fn number<T: std::str::FromStr>(name: &str, default: T) -> Result<T, String>
    where
        T::Err: std::fmt::Display,
    {
        match flag(name) {
            None => Ok(default),
            Some(value) => value.parse().map_err(|e| format!("{name} {value}: {e}")),
        }
    }
    let secs = |name, default| number(name, default).map(Duration::from_secs);
    Ok(Limits::new(
        secs(
            "--header-read-timeout",
            serving::DEFAULT_HEADER_READ_TIMEOUT_SECS,
        )?,
        secs(
            "--keep-alive-timeout",
            serving::DEFAULT_KEEP_ALIVE_TIMEOUT_SECS,
        )?,
        number("--max-header-bytes", serving::DEFAULT_MAX_HEADER_BYTES)?,
        number("--max-connections", serving::default_max_connections())?,
    )?)
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
