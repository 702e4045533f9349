//! The server side of the load test (`scripts/loadtest.sh`): one axum `GET` handler behind one
//! configuration of the policies, so a load generator on another core can compare them with the
//! bare handler in one run.
//!
//! ```text
//! cargo build --release --example loadtest --features jwt,redis
//! taskset -c 0 target/release/examples/loadtest --stack full --addr 127.0.0.1:3100
//! ```
//!
//! Stacks: `bare`, `jwt`, `rate_limit` (GitHub's `X-RateLimit-*` and the IETF fields),
//! `rate_limit_github` (GitHub's fields only), `rate_limit_layer` (the same limit as a
//! `RateLimitLayer` on the router, as tower_governor is, outside a `PolicyStack`),
//! `tower_governor` (tower_governor 0.8 with its headers, keyed by the same API key, for
//! comparison with the rate limits), `versioning`, `idempotency`,
//! `conditional`, `audit` (buffered), `empty_stack` (a `PolicyStack` with every slot empty),
//! `full` (built from a configuration by `StackConfig`: HS256 auth, the rate limit with its
//! default headers (GitHub's), versioning, conditional requests and buffered audit, the stack
//! the performance target names), `full_all` (every policy: idempotency too, and the IETF
//! rate-limit fields beside GitHub's), and `full_redis` (`full` on Redis, `--redis URL`). The
//! sections these are made of (`jwt`, `rate_limit`, `rate_limit_github`, `versioning`,
//! `idempotency`, `conditional`, `audit`) can also be named together, joined with `+`
//! (`jwt+rate_limit_github+versioning+conditional` is `full` without audit), to find what one
//! policy adds to the others. Every request should carry
//! `Authorization: Bearer <the token --print-token prints>` and `X-Api-Key: k_load`; every
//! quota is far above what one core can send, so every answer is a 200.
//!
//! `--handler-work-us N` makes the handler busy for N microseconds before it answers: work of a
//! known size, to see what a microsecond of the server's own work costs in all on this machine
//! (the server's CPU per request grows by more than N, as a slower server finds the load
//! generator asleep more often and must wake it).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use api_policy::backend::MemoryBackend;
use api_policy::stack::{StackBackend, StackBody, StackConfig};
use axum::Router;
use axum::body::Body;
use axum::response::Response;
use axum::routing::get;
use clap::Parser;
use tower::ServiceBuilder;

const SECRET: &str = "a-load-test-secret-that-is-32-bytes-or-more";

#[derive(Debug, Parser)]
struct Cli {
    /// Which policies wrap the handler.
    #[arg(long, default_value = "full")]
    stack: String,
    #[arg(long, default_value = "127.0.0.1:3100")]
    addr: SocketAddr,
    /// Redis for `full_redis`.
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    redis: String,
    /// Where the audit log goes (rotated at 64 MiB).
    #[arg(long, default_value = "/tmp/api-policy-loadtest/audit.log")]
    audit_log: std::path::PathBuf,
    /// Print the bearer token requests should carry, and exit.
    #[arg(long)]
    print_token: bool,
    /// Microseconds the handler spends busy before it answers (0: none).
    #[arg(long, default_value_t = 0)]
    handler_work_us: u64,
    /// Runtime worker threads. One by default: the load test pins the server to one core.
    #[arg(long, default_value_t = 1)]
    workers: usize,
}

impl Cli {
    fn work(&self) -> Duration {
        Duration::from_micros(self.handler_work_us)
    }
}

fn token() -> Result<String, jsonwebtoken::errors::Error> {
    let claims = serde_json::json!({
        "sub": "dr_load", "role": "doctor", "iss": "load", "aud": "api",
        "exp": 4_000_000_000u64, "iat": 1_700_000_000u64,
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
}

/// The sections of the full stack, each a policy a real API would set; `sections` picks some.
/// An unknown section's name is an error, not a panic: sections come from the command line.
fn config(sections: &[&str], audit_log: &std::path::Path) -> Result<String, String> {
    let mut text = String::from(
        "[callers]\napi_key_header = \"x-api-key\"\n\
         [[callers.api_keys]]\nkey = \"k_load\"\nid = \"load\"\ntier = \"default\"\n",
    );
    for section in sections {
        text.push_str(&match *section {
            "jwt" => format!(
                "[jwt]\nissuer = [\"load\"]\naudience = [\"api\"]\nhs256_secret = \"{SECRET}\"\n"
            ),
            // A million a second, as a burst too: far above one core, so the limit is computed, never reached.
            "rate_limit" => "[rate_limit]\nietf_headers = true\n\
                 [rate_limit.tiers]\ndefault = \"1000000/s\"\n"
                .to_string(),
            // GitHub's fields only, as many as tower_governor's.
            "rate_limit_github" => "[rate_limit]\n\
                 [rate_limit.tiers]\ndefault = \"1000000/s\"\n"
                .to_string(),
            "versioning" => "[versioning]\ndefault = \"2\"\npath_prefix = true\n\
                 header = \"Api-Version\"\n[[versioning.versions]]\nversion = \"2\"\n"
                .to_string(),
            "idempotency" => "[idempotency]\nrequire = [\"POST /api/v2/patients\"]\n".to_string(),
            "conditional" => "[[conditional.resources]]\nroute = \"/api/v2/patients/{id}\"\n\
                 cache_control = \"private, max-age=300\"\n"
                .to_string(),
            "audit" => format!(
                "[audit]\nlog = \"{}\"\nrotate_at_bytes = 67108864\ndurability = \"buffered\"\n\
                 [[audit.routes]]\nroute = \"/api/v2/patients/{{id}}\"\nsubject = \"id\"\n",
                audit_log.display()
            ),
            other => return Err(format!("no stack or section named `{other}`")),
        });
    }
    Ok(text)
}

fn handler(work: Duration) -> Router {
    Router::new().route(
        "/api/v2/patients/{id}",
        get(move || async move {
            // Busy, not asleep: the work is the server's own CPU, as a real handler's would be.
            // No work reads no clock, so the bare handler stays what it was.
            if !work.is_zero() {
                let began = Instant::now();
                while began.elapsed() < work {
                    std::hint::spin_loop();
                }
            }
            r#"{"id":"pat_1","name":"Ada"}"#
        }),
    )
}

fn with_stack<B: StackBackend>(
    sections: &[&str],
    cli: &Cli,
    backend: &B,
) -> Result<Router, Box<dyn std::error::Error>> {
    let config: StackConfig = toml::from_str(&config(sections, &cli.audit_log)?)?;
    let stack = config.build(backend)?;
    Ok(handler(cli.work()).layer(
        ServiceBuilder::new()
            .map_response(|response: Response<StackBody<Body>>| response.map(Body::new))
            .layer(stack),
    ))
}

/// The rate limit of `rate_limit_github` as a layer of its own, applied as tower_governor is.
/// Its API keys are in a map with a seeded fast hasher, as `StackConfig` keeps them.
fn rate_limit_layer(
    cli: &Cli,
    memory: &MemoryBackend,
) -> Result<Router, Box<dyn std::error::Error>> {
    let mut keys = std::collections::HashMap::with_hasher(foldhash::fast::RandomState::default());
    keys.insert(
        "k_load".to_string(),
        api_policy::principal::Principal::service("load").with_tier("default"),
    );
    let layer = api_policy::rate_limit::RateLimitLayer::builder(
        api_policy::rate_limit::MemoryRateLimitStore::new(memory),
    )
    .tier("default", "1000000/s".parse()?)
    .key_extractor(api_policy::principal::KeyExtractor::new().api_key_header("x-api-key", keys)?)
    .build()?;
    Ok(handler(cli.work()).layer(layer))
}

/// tower_governor keyed by the API key header, as `rate_limit` is.
#[derive(Clone)]
struct ApiKeyHeader;

impl tower_governor::key_extractor::KeyExtractor for ApiKeyHeader {
    type Key = String;

    fn extract<T>(&self, req: &http::Request<T>) -> Result<String, tower_governor::GovernorError> {
        req.headers()
            .get("x-api-key")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .ok_or(tower_governor::GovernorError::UnableToExtractKey)
    }
}

fn app(cli: &Cli) -> Result<Router, Box<dyn std::error::Error>> {
    let memory = MemoryBackend::new();
    // The full stack as the benchmark's target names it: HS256 auth, the rate limit with its
    // default (GitHub's) headers, versioning, conditional requests and buffered audit.
    const FULL: &[&str] = &[
        "jwt",
        "rate_limit_github",
        "versioning",
        "conditional",
        "audit",
    ];
    // Every policy the crate has, and the IETF rate-limit fields as well as GitHub's.
    const FULL_ALL: &[&str] = &[
        "jwt",
        "rate_limit",
        "versioning",
        "idempotency",
        "conditional",
        "audit",
    ];
    Ok(match cli.stack.as_str() {
        "bare" => handler(cli.work()),
        "tower_governor" => {
            let config = tower_governor::governor::GovernorConfigBuilder::default()
                .per_nanosecond(1)
                .burst_size(1_000_000_000)
                .key_extractor(ApiKeyHeader)
                .use_headers()
                .finish()
                .ok_or("governor config")?;
            handler(cli.work()).layer(tower_governor::GovernorLayer::new(config))
        }
        "rate_limit_layer" => rate_limit_layer(cli, &memory)?,
        "full" => with_stack(FULL, cli, &memory)?,
        "full_all" => with_stack(FULL_ALL, cli, &memory)?,
        // Every slot empty: what the composition itself costs.
        "empty_stack" => with_stack(&[], cli, &memory)?,
        #[cfg(feature = "redis")]
        "full_redis" => {
            let backend = api_policy::backend::RedisBackend::builder(cli.redis.as_str())
                .prefix(format!("loadtest:{}:", std::process::id()))
                .build()?;
            with_stack(FULL, cli, &backend)?
        }
        // Any sections of the full stack, by name, joined with `+`: `jwt+audit`.
        sections => with_stack(&sections.split('+').collect::<Vec<_>>(), cli, &memory)?,
    })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cli = Cli::parse();
    if cli.print_token {
        println!("{}", token()?);
        return Ok(());
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cli.workers.max(1))
        .enable_all()
        .build()?
        .block_on(serve(cli))
}

async fn serve(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    let app = app(&cli)?;
    let listener = tokio::net::TcpListener::bind(cli.addr).await?;
    println!("{} on {}", cli.stack, listener.local_addr()?);
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await?;
    Ok(())
}
