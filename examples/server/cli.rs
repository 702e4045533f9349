//! The command line (the clap `Cli`) and the configuration it loads: the file given, or the
//! built-in `examples/server.toml`, with the flags' overrides.

use std::net::SocketAddr;

use api_policy::stack::{BackendKind, StackConfig};
use clap::Parser;

use crate::serving;

/// The Stripe webhook signing secret used unless `--stripe-webhook-secret` is given. It is
/// published (here and in the README): replace it for anything beyond a local try-out, with the
/// secret Stripe shows for the endpoint, or the one `stripe listen` prints.
pub const DEMO_WEBHOOK_SECRET: &str = "whsec_api_policy_demo_0123456789abcdef";

/// The demo appointments API of api-policy: JWT bearer authentication, rate limited per caller,
/// tier and route, idempotent booking, and a Stripe webhook that marks appointments paid.
#[derive(Debug, Parser)]
#[command(name = "server")]
pub struct Cli {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:3000")]
    pub addr: SocketAddr,
    /// The policies (TOML; see examples/server.toml, which is also what runs without this flag):
    /// quotas, tiers, API keys, JWT issuer and audience, versions and deprecations, PHI routes,
    /// the backend. The flags below override it.
    #[arg(long, value_name = "PATH")]
    pub config: Option<std::path::PathBuf>,
    /// HS256 secret that tokens are signed with (at least 32 bytes), instead of the
    /// configuration's. The built-in one is published in the README: replace it for anything
    /// but a local try-out.
    #[arg(long, value_name = "SECRET")]
    pub jwt_secret: Option<String>,
    /// Verify RS*/ES*/EdDSA tokens with the keys of this JWKS (https, or http on loopback)
    /// instead of an HS256 secret. Needs `--features jwks`.
    #[arg(long, value_name = "URL", conflicts_with = "jwt_secret")]
    pub jwks_url: Option<String>,
    /// The PHI audit log (hash-chained JSON lines), instead of the configuration's
    /// (audit/phi-audit.log built in). Verify it with `cargo run --example audit_verify -- PATH`.
    #[arg(long, value_name = "PATH")]
    pub audit_log: Option<std::path::PathBuf>,
    /// Seal the audit log with checkpoints signed by this Ed25519 key (PKCS#8 PEM, as `openssl
    /// genpkey -algorithm ed25519` writes it), instead of the configuration's
    /// `[audit.checkpoints]`. Needs `--features audit-signing`; verify with `cargo run --example
    /// audit_verify --features audit-signing -- --public-key PUBLIC.pem LOG`.
    #[arg(long, value_name = "PATH")]
    pub audit_signing_key: Option<std::path::PathBuf>,
    /// Keep rate-limit state, idempotency keys, version usage, validators and handled webhook
    /// events in this Redis (needs `--features redis`), whatever the configuration's backend.
    #[arg(long, value_name = "URL")]
    pub redis: Option<String>,
    /// The signing secret of the Stripe webhook endpoint (`whsec_...`): the one Stripe shows for
    /// the endpoint, or that `stripe listen` prints. The default is published: replace it for
    /// anything but a local try-out.
    #[arg(long, value_name = "SECRET", default_value = DEMO_WEBHOOK_SECRET)]
    pub stripe_webhook_secret: String,
    /// Simulated latency of a booking, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 100)]
    pub booking_latency_ms: u64,
    /// How long a client may take to send a request head, in seconds; a slower one (a
    /// slowloris) is disconnected. On HTTP/1 it also bounds the wait for the next request.
    #[arg(long, value_name = "SECS", default_value_t = serving::DEFAULT_HEADER_READ_TIMEOUT_SECS)]
    pub header_read_timeout: u64,
    /// How long an idle keep-alive connection stays open after its last answer, in seconds
    /// (hyper's header-read timeout also bounds the wait for the next request on HTTP/1).
    #[arg(long, value_name = "SECS", default_value_t = serving::DEFAULT_KEEP_ALIVE_TIMEOUT_SECS)]
    pub keep_alive_timeout: u64,
    /// The largest request head, in bytes (at least 8192); a larger one is answered 431.
    #[arg(long, value_name = "BYTES", default_value_t = serving::DEFAULT_MAX_HEADER_BYTES)]
    pub max_header_bytes: usize,
    /// How many connections are open at once; more wait in the kernel's backlog until one
    /// closes. Default: 1024, or fewer when the open-file limit (`ulimit -n`) leaves less than
    /// that after 64 for everything else.
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,
}

/// The policies the demo runs without `--config`.
const BUILT_IN_CONFIG: &str = include_str!("../server.toml");

/// The configuration: the file given, or the built-in one, with the command line's overrides.
/// A file that does not parse, or names a key no section has, is refused with its line.
pub fn load_config(cli: &Cli) -> Result<StackConfig, Box<dyn std::error::Error>> {
    let (text, origin) = match &cli.config {
        Some(path) => (
            std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read the configuration {}: {e}", path.display()))?,
            path.display().to_string(),
        ),
        None => (
            BUILT_IN_CONFIG.to_string(),
            "the built-in configuration".to_string(),
        ),
    };
    let mut config: StackConfig = toml::from_str(&text).map_err(|e| format!("{origin}: {e}"))?;
    if let Some(url) = &cli.redis {
        config.backend.kind = BackendKind::Redis;
        config.backend.url = Some(url.clone());
    }
    if let Some(path) = &cli.audit_log {
        let audit = config
            .audit
            .as_mut()
            .ok_or(format!("--audit-log: {origin} has no [audit] section"))?;
        audit.log.clone_from(path);
    }
    if let Some(key) = &cli.audit_signing_key {
        let audit = config.audit.as_mut().ok_or(format!(
            "--audit-signing-key: {origin} has no [audit] section"
        ))?;
        let checkpoints = audit.checkpoints.get_or_insert_with(Default::default);
        checkpoints.key_file = Some(key.clone());
        checkpoints.key_env = None;
    }
    if cli.jwt_secret.is_some() || cli.jwks_url.is_some() {
        let jwt = config.jwt.as_mut().ok_or(format!(
            "--jwt-secret and --jwks-url: {origin} has no [jwt] section"
        ))?;
        if let Some(secret) = &cli.jwt_secret {
            jwt.hs256_secret = Some(secret.clone());
            jwt.hs256_secret_env = None;
        }
        if let Some(url) = &cli.jwks_url {
            jwt.jwks_url = Some(url.clone());
            jwt.oidc_issuer = None;
            jwt.hs256_secret = None;
            jwt.hs256_secret_env = None;
        }
    }
    Ok(config)
}
