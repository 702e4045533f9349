//! Mints an HS256 access token for the demo API (`examples/server/`) and prints it.
//!
//! ```text
//! cargo run -q --example mint_token --features jwt -- --role patient --sub pat_1
//! cargo run -q --example mint_token --features jwt -- --role doctor --sub prv_1 --tier pro
//! cargo run -q --example mint_token --features jwt -- --role admin --sub admin_1 --scope "patients:read"
//! cargo run -q --example mint_token --features jwt -- --role patient --sub pat_1 --ttl-secs 0
//! ```
//!
//! Only the token goes to stdout, so a shell can keep it:
//! `PATIENT=$(cargo run -q --example mint_token --features jwt -- --role patient --sub pat_1)`.
//! The defaults of `--secret`, `--issuer` and `--audience` are the server's; `--ttl-secs 0` gives a
//! token that is already expired (the server refuses `exp <= now`).
//!
//! The server includes this file as a module to mint the tokens it prints at start, so the two
//! cannot drift apart on claim names or defaults.

use std::error::Error;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use clap::builder::NonEmptyStringValueParser;
use clap::{Parser, ValueEnum};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;

/// The demo's HS256 secret. It is published in the README, so anyone can mint tokens with it:
/// start the server with `--jwt-secret` for anything but a local try-out.
pub const DEV_SECRET: &str = "api-policy-demo-secret-change-me-0123";
/// The issuer (`iss`) the server trusts by default.
pub const DEFAULT_ISSUER: &str = "api-policy-demo";
/// The audience (`aud`) the server expects by default.
pub const DEFAULT_AUDIENCE: &str = "demo-api";
/// RFC 7518 section 3.2: an HS256 key at least as long as the hash. The server's layer refuses
/// shorter ones, so minting with one would only produce tokens that never verify.
const MIN_SECRET_LEN: usize = 32;

/// Who the token speaks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Role {
    /// Reads their own record and books for themselves; the subject is their patient id.
    Patient,
    /// Reads every record and books for any patient.
    Doctor,
    /// Reads every record and books for any patient, as a doctor does.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Patient => "patient",
            Role::Doctor => "doctor",
            Role::Admin => "admin",
        }
    }
}

/// The rate-limit tier the token carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Tier {
    Free,
    Pro,
}

impl Tier {
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Free => "free",
            Tier::Pro => "pro",
        }
    }
}

/// What to put in a token, and how to sign it.
#[derive(Debug, Clone, Copy)]
pub struct TokenSpec<'a> {
    pub secret: &'a str,
    pub issuer: &'a str,
    pub audience: &'a str,
    pub sub: &'a str,
    pub role: Role,
    pub tier: Tier,
    /// Space-separated; left out of the token when `None` or blank.
    pub scope: Option<&'a str>,
    pub ttl_secs: u64,
}

#[derive(Serialize)]
struct DemoClaims<'a> {
    iss: &'a str,
    aud: &'a str,
    sub: &'a str,
    role: &'static str,
    tier: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<&'a str>,
    iat: u64,
    exp: u64,
    jti: String,
}

/// A signed HS256 token for `spec`, issued now.
///
/// # Errors
/// A secret shorter than 32 bytes, an empty subject, a system clock before 1970, or a signing
/// failure.
pub fn mint(spec: &TokenSpec<'_>) -> Result<String, Box<dyn Error + Send + Sync>> {
    if spec.secret.len() < MIN_SECRET_LEN {
        return Err(format!(
            "an HS256 secret needs at least {MIN_SECRET_LEN} bytes (this one has {}); the server \
             refuses shorter ones",
            spec.secret.len()
        )
        .into());
    }
    // The server refuses a token without a subject, and a patient's subject is its patient id.
    if spec.sub.is_empty() {
        return Err("the subject (--sub) must not be empty".into());
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|_| "the system clock is set before 1970")?;
    let iat = now.as_secs();
    let claims = DemoClaims {
        iss: spec.issuer,
        aud: spec.audience,
        sub: spec.sub,
        role: spec.role.as_str(),
        tier: spec.tier.as_str(),
        scope: spec.scope.filter(|s| !s.trim().is_empty()),
        iat,
        exp: iat.saturating_add(spec.ttl_secs),
        jti: token_id(now.as_nanos()),
    };
    let key = EncodingKey::from_secret(spec.secret.as_bytes());
    Ok(jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &key,
    )?)
}

/// A `jti` unique per token: nanoseconds since the epoch, the process id and a per-process
/// counter together do not repeat, which is all a revocation list needs, without pulling in a
/// random number generator.
fn token_id(nanos: u128) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{nanos:x}-{:x}-{n:x}", std::process::id())
}

/// Mints a demo access token (HS256) for the appointments API and prints it.
#[derive(Debug, Parser)]
#[command(name = "mint_token")]
struct Cli {
    /// The caller's role.
    #[arg(long, value_enum)]
    role: Role,
    /// The subject: a patient's id for a patient (e.g. pat_1), any stable id otherwise.
    #[arg(long, value_parser = NonEmptyStringValueParser::new())]
    sub: String,
    /// The rate-limit tier.
    #[arg(long, value_enum, default_value_t = Tier::Free)]
    tier: Tier,
    /// Space-separated scopes (the `scope` claim); none by default.
    #[arg(long)]
    scope: Option<String>,
    /// Seconds until the token expires; 0 mints one that is already expired.
    #[arg(long, value_name = "SECS", default_value_t = 3600)]
    ttl_secs: u64,
    /// The HS256 secret; the server's default.
    #[arg(long, default_value = DEV_SECRET, hide_default_value = true)]
    secret: String,
    /// The issuer (`iss`).
    #[arg(long, default_value = DEFAULT_ISSUER)]
    issuer: String,
    /// The audience (`aud`).
    #[arg(long, default_value = DEFAULT_AUDIENCE)]
    audience: String,
}

fn main() {
    let cli = Cli::parse();
    let spec = TokenSpec {
        secret: &cli.secret,
        issuer: &cli.issuer,
        audience: &cli.audience,
        sub: &cli.sub,
        role: cli.role,
        tier: cli.tier,
        scope: cli.scope.as_deref(),
        ttl_secs: cli.ttl_secs,
    };
    match mint(&spec) {
        Ok(token) => println!("{token}"),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
