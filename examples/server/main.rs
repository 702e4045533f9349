//! The demo API of `api-policy`: a small healthcare appointments API on axum, behind the crate's
//! [`JwtAuthLayer`], [`RateLimitLayer`] and [`IdempotencyLayer`], with a Stripe webhook behind a
//! [`WebhookLayer`], and in-memory seed data.
//!
//! ```text
//! cargo run --example server --features jwt,axum                   # HS256 tokens, in-memory rate-limit store
//! cargo run --example server --features jwt,axum,redis -- --redis redis://127.0.0.1:6379
//! cargo run --example server --features jwt,axum,jwks -- --jwks-url https://issuer.example/jwks.json
//! cargo run --example server --features jwt,axum -- --help
//! ```
//!
//! Callers are identified, for authorization and for rate limits, in this order:
//!
//! | credential | principal | tier (default quota) |
//! |---|---|---|
//! | `Authorization: Bearer <JWT>` | the token's `sub` | its `tier` claim: `free` (60/min) or `pro` (600/min) |
//! | `X-Api-Key: demo-free-key` (service clients) | `demo-free` | `free` |
//! | `X-Api-Key: demo-pro-key` (service clients) | `demo-pro` | `pro` |
//! | nothing, or an unknown key | the peer IP address | `anonymous` (20/min) |
//!
//! Tokens are HS256 with `iss` `api-policy-demo` and `aud` `demo-api` unless configured
//! otherwise, and carry `role` (`patient`, `doctor`, `admin`), `tier` and `scope`; a patient's
//! `sub` is its patient id. `examples/mint_token.rs` mints them, and the server prints a few at
//! start. A token that is sent must be valid (401 `invalid_token` otherwise), even where none is
//! needed.
//!
//! `GET /api/v2/patients/{id}` and `POST /api/v2/appointments` need a token with one of the three
//! roles; a patient reads and books only for themselves (403), doctors and admins for anyone.
//! Booking has its own bucket, `booking` (5/min per caller, every tier), and `GET /health` is not
//! limited. Every error is `application/problem+json` (RFC 9457) with a stable `error` code.
//!
//! `POST /api/v2/appointments` requires an `Idempotency-Key` header (400
//! `idempotency_key_missing` without one): a retry with the same key and body gets the first
//! answer again, with `Idempotent-Replayed: true`, and books nothing; the same key with another
//! body is 422 `idempotency_key_reused`. Keys are scoped per caller and kept 24 hours. A refused
//! booking (a problem answer) does not use up its key.
//!
//! `POST /webhooks/stripe` takes Stripe events signed with `--stripe-webhook-secret` (400 for a
//! missing, wrong or stale `Stripe-Signature`). A `payment_intent.succeeded` event whose
//! `data.object.metadata.appointment_id` names an appointment marks it paid, which its v2 shape
//! shows as `"payment": {"status": "paid", "payment_intent": "pi_..."}`. Each event id is handled
//! once (a redelivery gets the first answer, `Idempotent-Replayed: true`); every verified delivery
//! gets a 200, even one that cannot be applied, which Stripe would otherwise retry for days. The
//! route needs no token and is not rate limited: the signature authenticates it.
//!
//! Versions: `/api/v1/...` is deprecated since 2026-07-01 (`Deprecation: @1782864000`,
//! `Sunset: Thu, 31 Dec 2026 23:59:59 GMT`, `Link: </docs/migrate-to-v2>; rel="deprecation"`
//! on every v1 answer, which is otherwise unchanged), and every v1 call is counted per caller;
//! `/api/v2/...` is current and also takes the dated revision `Api-Version: 2024-04-10` (another
//! date is 410, a v1 date on a v2 path 400). Every answer echoes `Api-Version`. `GET
//! /admin/deprecations` (admin token) lists who called v1 in the last 30 days.
//!
//! `GET /api/v2/appointments/{id}` answers carry a strong `ETag` and `Cache-Control: private,
//! max-age=300`; `If-None-Match` with that ETag gets 304 and no body. `PUT` on the same route
//! must carry `If-Match` with the ETag last read: 428 `precondition_required` without it, 412
//! `precondition_failed` (naming the current ETag, the handler not run) when the appointment
//! changed since, 200 with the new ETag otherwise; two updates with the same ETag never both
//! pass.
//!
//! `GET /metrics` shows the layers' decision counters and store latencies in Prometheus' text
//! format (build with `--features jwt,axum,metrics` for the crate to report them).
//!
//! Every request to a patient or appointment route (`/api/v2/patients/{id}`,
//! `/api/{version}/appointments[/{id}]`) writes one record to the PHI audit log (`--audit-log`,
//! default `audit/phi-audit.log`): time, request id, who (token subject), what (method and route
//! template), which patient or appointment, the status and the refusing policy, the client IP,
//! user agent and latency; never a body, a token or a query value. The records form a SHA-256
//! hash chain: `cargo run --example audit_verify -- audit/phi-audit.log` checks it. The answer
//! leaves only once its record is on disk; if the log cannot be written, those routes answer 503.
//!
//! Rate-limit counters, idempotency keys and handled webhook events are kept in memory, or in
//! Redis with `--redis`. The appointments are always in memory: after a restart with `--redis`,
//! an old key or event id replays its first answer (a booking, a payment) that the fresh seed data
//! no longer has, so use new ones.

// One file per part: the command line and its configuration (`cli`), the seed data and the shared
// state (`data`), problem answers and the extractors that give them (`problem`), input checks
// (`validate`), the handlers, the routes behind the policies (`app`), what is printed at start
// (`usage`), and serving until Ctrl-C (`serve`).
mod app;
mod cli;
mod data;
mod handlers;
mod problem;
mod serve;
mod usage;
mod validate;

// The token minting of `examples/mint_token.rs`, so the tokens printed at start are exactly what
// that tool makes. Its `main` and flags serve that binary only.
#[allow(dead_code)]
#[path = "../mint_token.rs"]
mod mint_token;

// How the examples serve: hyper-util with connection limits (header-read and keep-alive
// timeouts, a bounded head, a connection cap), shared with `examples/hyper.rs` and `grpc.rs`.
#[path = "../support/serving.rs"]
mod serving;

use clap::Parser;

use cli::{Cli, load_config};
use serve::serve;

async fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    let config = load_config(&cli)?;
    // The backend the configuration names (memory here, or Redis with `--features redis`).
    let backend = config.backend.build()?;
    let name = backend.name();
    serve(cli, config, backend, name).await
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    if let Err(e) = run(cli).await {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
