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

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use api_policy::auth::{Access, Denied};
use api_policy::conditional::config::ConditionalConfig;
use api_policy::conditional::{
    ConditionalLayer, Current, EntityTag, StoredValidators, ValidatorStore,
};
use api_policy::idempotency::{IdempotencyKey, NotExecuted};
use api_policy::principal::{PeerAddr, Principal};
use api_policy::stack::{
    BackendKind, ConfiguredStack, Maybe, StackBackend, StackBody, StackConfig,
};
use api_policy::versioning::{VersionPinStore, VersioningLayer};
use api_policy::webhook::WebhookLayer;
use axum::body::{Body, Bytes};
use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use clap::Parser;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tower::ServiceBuilder;

// The token minting of `examples/mint_token.rs`, so the tokens printed at start are exactly what
// that tool makes. Its `main` and flags serve that binary only.
#[allow(dead_code)]
#[path = "mint_token.rs"]
mod mint_token;

// How the examples serve: hyper-util with connection limits (header-read and keep-alive
// timeouts, a bounded head, a connection cap), shared with `examples/hyper.rs` and `grpc.rs`.
#[path = "support/serving.rs"]
mod serving;

use mint_token::{Role, Tier, TokenSpec};

// ---------------------------------------------------------------------------------------------
// Command line
// ---------------------------------------------------------------------------------------------

/// The Stripe webhook signing secret used unless `--stripe-webhook-secret` is given. It is
/// published (here and in the README): replace it for anything beyond a local try-out, with the
/// secret Stripe shows for the endpoint, or the one `stripe listen` prints.
const DEMO_WEBHOOK_SECRET: &str = "whsec_api_policy_demo_0123456789abcdef";

/// The demo appointments API of api-policy: JWT bearer authentication, rate limited per caller,
/// tier and route, idempotent booking, and a Stripe webhook that marks appointments paid.
#[derive(Debug, Parser)]
#[command(name = "server")]
struct Cli {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:3000")]
    addr: SocketAddr,
    /// The policies (TOML; see examples/server.toml, which is also what runs without this flag):
    /// quotas, tiers, API keys, JWT issuer and audience, versions and deprecations, PHI routes,
    /// the backend. The flags below override it.
    #[arg(long, value_name = "PATH")]
    config: Option<std::path::PathBuf>,
    /// HS256 secret that tokens are signed with (at least 32 bytes), instead of the
    /// configuration's. The built-in one is published in the README: replace it for anything
    /// but a local try-out.
    #[arg(long, value_name = "SECRET")]
    jwt_secret: Option<String>,
    /// Verify RS*/ES*/EdDSA tokens with the keys of this JWKS (https, or http on loopback)
    /// instead of an HS256 secret. Needs `--features jwks`.
    #[arg(long, value_name = "URL", conflicts_with = "jwt_secret")]
    jwks_url: Option<String>,
    /// The PHI audit log (hash-chained JSON lines), instead of the configuration's
    /// (audit/phi-audit.log built in). Verify it with `cargo run --example audit_verify -- PATH`.
    #[arg(long, value_name = "PATH")]
    audit_log: Option<std::path::PathBuf>,
    /// Seal the audit log with checkpoints signed by this Ed25519 key (PKCS#8 PEM, as `openssl
    /// genpkey -algorithm ed25519` writes it), instead of the configuration's
    /// `[audit.checkpoints]`. Needs `--features audit-signing`; verify with `cargo run --example
    /// audit_verify --features audit-signing -- --public-key PUBLIC.pem LOG`.
    #[arg(long, value_name = "PATH")]
    audit_signing_key: Option<std::path::PathBuf>,
    /// Keep rate-limit state, idempotency keys, version usage, validators and handled webhook
    /// events in this Redis (needs `--features redis`), whatever the configuration's backend.
    #[arg(long, value_name = "URL")]
    redis: Option<String>,
    /// The signing secret of the Stripe webhook endpoint (`whsec_...`): the one Stripe shows for
    /// the endpoint, or that `stripe listen` prints. The default is published: replace it for
    /// anything but a local try-out.
    #[arg(long, value_name = "SECRET", default_value = DEMO_WEBHOOK_SECRET)]
    stripe_webhook_secret: String,
    /// Simulated latency of a booking, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 100)]
    booking_latency_ms: u64,
    /// How long a client may take to send a request head, in seconds; a slower one (a
    /// slowloris) is disconnected. On HTTP/1 it also bounds the wait for the next request.
    #[arg(long, value_name = "SECS", default_value_t = serving::DEFAULT_HEADER_READ_TIMEOUT_SECS)]
    header_read_timeout: u64,
    /// How long an idle keep-alive connection stays open after its last answer, in seconds
    /// (hyper's header-read timeout also bounds the wait for the next request on HTTP/1).
    #[arg(long, value_name = "SECS", default_value_t = serving::DEFAULT_KEEP_ALIVE_TIMEOUT_SECS)]
    keep_alive_timeout: u64,
    /// The largest request head, in bytes (at least 8192); a larger one is answered 431.
    #[arg(long, value_name = "BYTES", default_value_t = serving::DEFAULT_MAX_HEADER_BYTES)]
    max_header_bytes: usize,
    /// How many connections are open at once; more wait in the kernel's backlog until one
    /// closes. Default: 1024, or fewer when the open-file limit (`ulimit -n`) leaves less than
    /// that after 64 for everything else.
    #[arg(long, value_name = "N")]
    max_connections: Option<usize>,
}

/// The policies the demo runs without `--config`.
const BUILT_IN_CONFIG: &str = include_str!("server.toml");

/// The configuration: the file given, or the built-in one, with the command line's overrides.
/// A file that does not parse, or names a key no section has, is refused with its line.
fn load_config(cli: &Cli) -> Result<StackConfig, Box<dyn std::error::Error>> {
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

// ---------------------------------------------------------------------------------------------
// Data
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum Status {
    Scheduled,
    Confirmed,
    CheckedIn,
    Completed,
    Cancelled,
}

impl Status {
    const NAMES: &'static [(&'static str, Status)] = &[
        ("scheduled", Status::Scheduled),
        ("confirmed", Status::Confirmed),
        ("checked_in", Status::CheckedIn),
        ("completed", Status::Completed),
        ("cancelled", Status::Cancelled),
    ];

    fn parse(s: &str) -> Option<Self> {
        Self::NAMES
            .iter()
            .find(|(name, _)| *name == s)
            .map(|(_, status)| *status)
    }
}

/// Whether an appointment has been paid for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum Payment {
    Unpaid,
    Paid,
}

#[derive(Debug, Clone, Serialize)]
struct Provider {
    id: String,
    name: String,
}

#[derive(Debug, Clone, Serialize)]
struct Patient {
    id: String,
    name: String,
    date_of_birth: String,
    mrn: String,
    phone: String,
    email: String,
    allergies: Vec<String>,
    primary_provider_id: String,
}

#[derive(Debug)]
struct Slot {
    provider_id: String,
    /// RFC 3339, UTC.
    start: String,
    /// The appointment holding the slot.
    booked_by: Option<String>,
}

#[derive(Debug)]
struct Appointment {
    id: String,
    /// The slot held; released when the appointment is cancelled.
    slot_id: Option<String>,
    date: String,
    status: Status,
    patient_id: String,
    provider_id: String,
    payment: Payment,
    /// The Stripe payment intent that paid it, once paid.
    payment_intent: Option<String>,
    /// Kept for the clinical record; part of neither public shape.
    #[allow(dead_code)]
    reason: String,
}

/// v1 shape.
#[derive(Debug, Serialize)]
struct AppointmentV1 {
    id: String,
    date: String,
    provider_name: String,
}

/// v2 shape.
#[derive(Debug, Serialize)]
struct AppointmentV2 {
    id: String,
    date: String,
    status: Status,
    patient_id: String,
    provider: Provider,
    payment: PaymentV2,
}

/// v2 `payment`: `{"status": "unpaid"}` or `{"status": "paid", "payment_intent": "pi_..."}`.
#[derive(Debug, Serialize)]
struct PaymentV2 {
    status: Payment,
    #[serde(skip_serializing_if = "Option::is_none")]
    payment_intent: Option<String>,
}

#[derive(Debug, Default)]
struct Db {
    appointments: HashMap<String, Appointment>,
    patients: HashMap<String, Patient>,
    providers: HashMap<String, Provider>,
    slots: BTreeMap<String, Slot>,
    next_appointment: u64,
}

impl Db {
    /// Three providers, three patients, fifteen slots on 2026-12-01..03, `apt_1`..`apt_5` booked.
    fn seed() -> Self {
        let mut db = Db {
            next_appointment: 6,
            ..Db::default()
        };
        for (id, name) in [
            ("prv_1", "Dr. Amara Okafor"),
            ("prv_2", "Dr. Lin Chen"),
            ("prv_3", "Dr. Sofia Rossi"),
        ] {
            let provider = Provider {
                id: id.into(),
                name: name.into(),
            };
            db.providers.insert(id.into(), provider);
        }
        let patients = [
            (
                "pat_1",
                "Jane Doe",
                "1984-03-12",
                "jane.doe",
                "penicillin",
                "prv_1",
            ),
            (
                "pat_2",
                "Rahul Mehta",
                "1971-11-02",
                "rahul.mehta",
                "",
                "prv_2",
            ),
            (
                "pat_3",
                "Maria Garcia",
                "1996-07-25",
                "maria.garcia",
                "latex",
                "prv_3",
            ),
        ];
        for (n, (id, name, dob, mail, allergy, provider)) in patients.into_iter().enumerate() {
            let patient = Patient {
                id: id.into(),
                name: name.into(),
                date_of_birth: dob.into(),
                mrn: format!("MRN-{:06}", 1001 + n),
                phone: format!("+1-555-01{:02}", n + 10),
                email: format!("{mail}@example.com"),
                allergies: (!allergy.is_empty())
                    .then(|| allergy.to_string())
                    .into_iter()
                    .collect(),
                primary_provider_id: provider.into(),
            };
            db.patients.insert(id.into(), patient);
        }
        for (day, provider) in [(1, "prv_1"), (2, "prv_2"), (3, "prv_3")] {
            for (hour, minute) in [(9, 0), (9, 30), (10, 0), (10, 30), (11, 0)] {
                let id = format!("slot_2026_12_{day:02}_{hour:02}{minute:02}");
                let slot = Slot {
                    provider_id: provider.into(),
                    start: format!("2026-12-{day:02}T{hour:02}:{minute:02}:00Z"),
                    booked_by: None,
                };
                db.slots.insert(id, slot);
            }
        }
        let booked = [
            (
                "apt_1",
                "slot_2026_12_01_0900",
                "pat_1",
                Status::Confirmed,
                "Annual physical",
            ),
            (
                "apt_2",
                "slot_2026_12_01_0930",
                "pat_2",
                Status::Scheduled,
                "Blood pressure review",
            ),
            (
                "apt_3",
                "slot_2026_12_02_0900",
                "pat_3",
                Status::Scheduled,
                "Palpitations",
            ),
            (
                "apt_4",
                "slot_2026_12_02_0930",
                "pat_1",
                Status::Scheduled,
                "Cardiology follow-up",
            ),
            (
                "apt_5",
                "slot_2026_12_03_0900",
                "pat_2",
                Status::Confirmed,
                "Skin check",
            ),
        ];
        for (id, slot_id, patient_id, status, reason) in booked {
            // Seed data is ours: every slot above exists.
            if let Some(slot) = db.slots.get_mut(slot_id) {
                slot.booked_by = Some(id.into());
                let appointment = Appointment {
                    id: id.into(),
                    slot_id: Some(slot_id.into()),
                    date: slot.start.clone(),
                    status,
                    patient_id: patient_id.into(),
                    provider_id: slot.provider_id.clone(),
                    payment: Payment::Unpaid,
                    payment_intent: None,
                    reason: reason.into(),
                };
                db.appointments.insert(id.into(), appointment);
            }
        }
        db
    }
}

/// The provider with this id, in the shapes' `{id, name}` form.
fn provider(providers: &HashMap<String, Provider>, id: &str) -> Provider {
    providers.get(id).cloned().unwrap_or_else(|| Provider {
        id: id.into(),
        name: "(unknown provider)".into(),
    })
}

impl Appointment {
    fn v1(&self, providers: &HashMap<String, Provider>) -> AppointmentV1 {
        AppointmentV1 {
            id: self.id.clone(),
            date: self.date.clone(),
            provider_name: provider(providers, &self.provider_id).name,
        }
    }

    fn v2(&self, providers: &HashMap<String, Provider>) -> AppointmentV2 {
        AppointmentV2 {
            id: self.id.clone(),
            date: self.date.clone(),
            status: self.status,
            patient_id: self.patient_id.clone(),
            provider: provider(providers, &self.provider_id),
            payment: PaymentV2 {
                status: self.payment,
                payment_intent: self.payment_intent.clone(),
            },
        }
    }
}

#[derive(Clone)]
struct AppState {
    db: Arc<Mutex<Db>>,
    booking_latency: Duration,
    /// The deprecation report of `GET /admin/deprecations`, read from the versioning layer.
    deprecations: DeprecationReport,
}

/// Builds the deprecation report: who called each deprecated version in the last 30 days.
type DeprecationReport = Arc<
    dyn Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = serde_json::Value> + Send>>
        + Send
        + Sync,
>;

impl AppState {
    fn new(booking_latency: Duration, deprecations: DeprecationReport) -> Self {
        Self {
            db: Arc::new(Mutex::new(Db::seed())),
            booking_latency,
            deprecations,
        }
    }

    /// The data; a handler that panicked mid-update cannot leave it half-written (every update
    /// is a few field assignments), so a poisoned lock is taken over.
    fn db(&self) -> MutexGuard<'_, Db> {
        self.db.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

// ---------------------------------------------------------------------------------------------
// Problems (RFC 9457) and extractors that answer with them
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Serialize)]
struct Problem {
    #[serde(rename = "type")]
    kind: &'static str,
    title: &'static str,
    status: u16,
    detail: String,
    error: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'static str>,
}

impl Problem {
    fn new(status: StatusCode, error: &'static str, detail: impl Into<String>) -> Self {
        Self {
            kind: "about:blank",
            title: status.canonical_reason().unwrap_or("Error"),
            status: status.as_u16(),
            detail: detail.into(),
            error,
            field: None,
        }
    }

    fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", detail)
    }

    /// 422 `validation_failed` naming the field.
    fn invalid(field: &'static str, detail: impl Into<String>) -> Self {
        Self {
            field: Some(field),
            ..Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
                detail,
            )
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let content_type = HeaderValue::from_static("application/problem+json");
        // The array of headers is applied after `Json`, replacing its content type.
        let mut response =
            (status, [(header::CONTENT_TYPE, content_type)], Json(self)).into_response();
        // Every problem in this demo is answered before any data changes (bad input, an unknown
        // id, a slot already taken), so the idempotency layer must not keep it as the key's
        // answer: the corrected retry of a failed booking may reuse its key.
        response.extensions_mut().insert(NotExecuted);
        response
    }
}

/// `Json<T>`, but a body that is not JSON, or not this JSON, gets a problem, not plain text.
struct ApiJson<T>(T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = Problem;

    async fn from_request(request: Request, state: &S) -> Result<Self, Problem> {
        match Json::<T>::from_request(request, state).await {
            Ok(Json(value)) => Ok(Self(value)),
            Err(rejection) => {
                let error = match rejection {
                    JsonRejection::JsonSyntaxError(_) => "malformed_json",
                    JsonRejection::MissingJsonContentType(_) => "unsupported_media_type",
                    _ => "invalid_body",
                };
                Err(Problem::new(
                    rejection.status(),
                    error,
                    rejection.body_text(),
                ))
            }
        }
    }
}

/// The `{id}` path segment, with a problem for one that does not decode.
struct Id(String);

impl<S: Send + Sync> FromRequestParts<S> for Id {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        match Path::<String>::from_request_parts(parts, state).await {
            Ok(Path(id)) => Ok(Self(id)),
            Err(rejection) => Err(Problem::new(
                rejection.status(),
                "invalid_path",
                rejection.body_text(),
            )),
        }
    }
}

/// A refusal from a handler: one of ours, or the authentication layer's own 403 (same renderer
/// and `WWW-Authenticate` challenge as its other refusals).
enum ApiError {
    Problem(Problem),
    Denied(Denied),
}

impl From<Problem> for ApiError {
    fn from(problem: Problem) -> Self {
        Self::Problem(problem)
    }
}

impl From<Denied> for ApiError {
    fn from(denied: Denied) -> Self {
        Self::Denied(denied)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            Self::Problem(problem) => problem.into_response(),
            Self::Denied(denied) => denied.into_response(),
        }
    }
}

/// Doctors and admins act for every patient; a patient only for themselves, its token's subject
/// being its patient id.
fn may_act_for(me: &Principal, patient_id: &str) -> bool {
    me.has_role("doctor")
        || me.has_role("admin")
        || (me.has_role("patient") && &*me.id == patient_id)
}

// ---------------------------------------------------------------------------------------------
// Validation at the boundary
// ---------------------------------------------------------------------------------------------

/// `^slot_[a-z0-9_]+$`.
fn is_slot_id(s: &str) -> bool {
    s.strip_prefix("slot_").is_some_and(|rest| {
        !rest.is_empty()
            && rest
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    })
}

/// 1 to 500 characters, not blank, no `<` or `>`.
fn is_reason(s: &str) -> bool {
    (1..=500).contains(&s.chars().count()) && !s.trim().is_empty() && !s.contains(['<', '>'])
}

/// `YYYY-MM-DDTHH:MM:SSZ`, a real date and time of day.
fn is_utc_datetime(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
        || b[19] != b'Z'
    {
        return false;
    }
    let number = |range: std::ops::Range<usize>| -> Option<u32> {
        let digits = &b[range];
        digits
            .iter()
            .all(u8::is_ascii_digit)
            .then(|| digits.iter().fold(0, |n, d| n * 10 + u32::from(d - b'0')))
    };
    let (Some(year), Some(month), Some(day), Some(hour), Some(minute), Some(second)) = (
        number(0..4),
        number(5..7),
        number(8..10),
        number(11..13),
        number(14..16),
        number(17..19),
    ) else {
        return false;
    };
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1..=days).contains(&day) && hour < 24 && minute < 60 && second < 60
}

// ---------------------------------------------------------------------------------------------
// Handlers
// ---------------------------------------------------------------------------------------------

async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

async fn get_appointment_v1(
    State(state): State<AppState>,
    Id(id): Id,
) -> Result<Json<AppointmentV1>, Problem> {
    let db = state.db();
    let appointment = db
        .appointments
        .get(&id)
        .ok_or_else(|| Problem::not_found("No appointment has this id."))?;
    Ok(Json(appointment.v1(&db.providers)))
}

async fn get_appointment_v2(
    State(state): State<AppState>,
    Id(id): Id,
) -> Result<Json<AppointmentV2>, Problem> {
    let db = state.db();
    let appointment = db
        .appointments
        .get(&id)
        .ok_or_else(|| Problem::not_found("No appointment has this id."))?;
    Ok(Json(appointment.v2(&db.providers)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateAppointment {
    date: Option<String>,
    status: Option<String>,
}

async fn update_appointment(
    State(state): State<AppState>,
    Id(id): Id,
    ApiJson(update): ApiJson<UpdateAppointment>,
) -> Result<Response, Problem> {
    if update.date.is_none() && update.status.is_none() {
        return Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            "send at least one of date, status",
        ));
    }
    if update.date.as_deref().is_some_and(|d| !is_utc_datetime(d)) {
        return Err(Problem::invalid(
            "date",
            "date must be UTC, as YYYY-MM-DDTHH:MM:SSZ",
        ));
    }
    let status = match update.status.as_deref() {
        None => None,
        Some(s) => Some(Status::parse(s).ok_or_else(|| {
            Problem::invalid(
                "status",
                "status must be one of scheduled, confirmed, checked_in, completed, cancelled",
            )
        })?),
    };

    let mut guard = state.db();
    let db = &mut *guard;
    let appointment = db
        .appointments
        .get_mut(&id)
        .ok_or_else(|| Problem::not_found("No appointment has this id."))?;
    if appointment.status == Status::Cancelled {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "appointment_cancelled",
            "A cancelled appointment cannot be changed; book a new one.",
        ));
    }
    if let Some(date) = update.date {
        appointment.date = date;
    }
    if let Some(status) = status {
        appointment.status = status;
        if status == Status::Cancelled {
            // Free the slot for others.
            if let Some(slot) = appointment
                .slot_id
                .take()
                .and_then(|s| db.slots.get_mut(&s))
            {
                slot.booked_by = None;
            }
        }
    }
    tracing::info!(appointment = %id, "appointment updated");
    // The new representation's ETag, as a GET of it gets, so the client can update again.
    let body = appointment.v2(&db.providers);
    let etag = serde_json::to_vec(&body)
        .map(|json| EntityTag::digest(&json).to_header_value())
        .ok();
    let mut response = Json(body).into_response();
    if let Some(etag) = etag {
        response.headers_mut().insert(header::ETAG, etag);
    }
    Ok(response)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Booking {
    slot_id: String,
    patient_id: String,
    reason: String,
}

async fn book_appointment(
    State(state): State<AppState>,
    access: Access,
    ApiJson(booking): ApiJson<Booking>,
) -> Result<Response, ApiError> {
    // Before validation and the lookups, so a patient learns nothing about other patients' ids.
    access.ensure(
        may_act_for(access.principal(), &booking.patient_id),
        "A patient may book only for themselves.",
    )?;
    Ok(book(&state, booking).await?)
}

async fn book(state: &AppState, booking: Booking) -> Result<Response, Problem> {
    if !is_slot_id(&booking.slot_id) {
        return Err(Problem::invalid(
            "slot_id",
            "slot_id must match ^slot_[a-z0-9_]+$",
        ));
    }
    if !is_reason(&booking.reason) {
        return Err(Problem::invalid(
            "reason",
            "reason must be 1 to 500 characters without HTML",
        ));
    }

    // The scheduling system is slow. The slot is checked and taken under one lock afterwards, so
    // two bookings racing for it cannot both win.
    tokio::time::sleep(state.booking_latency).await;

    let mut guard = state.db();
    let db = &mut *guard;
    if !db.patients.contains_key(&booking.patient_id) {
        return Err(Problem {
            field: Some("patient_id"),
            ..Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "unknown_patient",
                "No patient has this id.",
            )
        });
    }
    let id = format!("apt_{}", db.next_appointment);
    let Some(slot) = db.slots.get_mut(&booking.slot_id) else {
        return Err(Problem {
            field: Some("slot_id"),
            ..Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "unknown_slot",
                "No slot has this id.",
            )
        });
    };
    if slot.booked_by.is_some() {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "slot_unavailable",
            "This slot is already booked; pick another.",
        ));
    }
    slot.booked_by = Some(id.clone());
    let appointment = Appointment {
        id: id.clone(),
        slot_id: Some(booking.slot_id.clone()),
        date: slot.start.clone(),
        status: Status::Scheduled,
        patient_id: booking.patient_id,
        provider_id: slot.provider_id.clone(),
        payment: Payment::Unpaid,
        payment_intent: None,
        reason: booking.reason,
    };
    db.next_appointment += 1;
    let body = appointment.v2(&db.providers);
    db.appointments.insert(id.clone(), appointment);
    tracing::info!(appointment = %id, slot = %booking.slot_id, "appointment booked");
    let location = format!("/api/v2/appointments/{id}");
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(body),
    )
        .into_response())
}

async fn get_patient(
    State(state): State<AppState>,
    access: Access,
    Id(id): Id,
) -> Result<Response, ApiError> {
    // Decided before the lookup: a patient probing other ids gets 403 whether or not they exist.
    access.ensure(
        may_act_for(access.principal(), &id),
        "A patient may read only their own record.",
    )?;
    let db = state.db();
    let patient = db
        .patients
        .get(&id)
        .ok_or_else(|| Problem::not_found("No patient has this id."))?;
    // PHI: no shared cache may keep it.
    Ok(([(header::CACHE_CONTROL, "no-store")], Json(patient.clone())).into_response())
}

/// `POST /webhooks/stripe`, behind the [`WebhookLayer`]: the signature is verified and the event
/// is new (a redelivery of a handled one gets the first answer without coming here).
///
/// A `payment_intent.succeeded` event marks the appointment in its
/// `data.object.metadata.appointment_id` paid by the intent `data.object.id`. Every verified
/// delivery gets a 200, even one that cannot be applied: Stripe retries any other answer for
/// days, and retrying will not make an unknown appointment known.
async fn stripe_webhook(
    State(state): State<AppState>,
    key: Option<Extension<IdempotencyKey>>,
    body: Bytes,
) -> Json<serde_json::Value> {
    let attempt = key.map_or(1, |Extension(key)| key.attempt);
    let ignored = |event: &str, why: String| {
        tracing::warn!(event, attempt, "Stripe event ignored: {why}");
        Json(serde_json::json!({ "received": true, "ignored": why }))
    };
    // The layer found a string `id` in it, so it is JSON.
    let Ok(event) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return ignored("?", "the body is not JSON".into());
    };
    let event_id = event["id"].as_str().unwrap_or_default();
    let kind = event["type"].as_str().unwrap_or_default();
    if kind != "payment_intent.succeeded" {
        tracing::info!(event = event_id, kind, "Stripe event not handled here");
        return Json(serde_json::json!({
            "received": true,
            "ignored": format!("event type {kind} is not handled"),
        }));
    }
    let intent = &event["data"]["object"];
    let Some(appointment_id) = intent["metadata"]["appointment_id"].as_str() else {
        return ignored(
            event_id,
            "no data.object.metadata.appointment_id in the event".into(),
        );
    };
    let Some(intent_id) = intent["id"].as_str() else {
        return ignored(event_id, "no data.object.id in the event".into());
    };
    let mut db = state.db();
    let Some(appointment) = db.appointments.get_mut(appointment_id) else {
        return ignored(event_id, format!("no appointment {appointment_id}"));
    };
    match (appointment.payment, appointment.payment_intent.as_deref()) {
        // Another event for the same payment (Stripe may send one twice under two ids).
        (Payment::Paid, Some(paid_by)) if paid_by == intent_id => {}
        (Payment::Paid, paid_by) => tracing::warn!(
            appointment = appointment_id,
            paid_by,
            intent = intent_id,
            "appointment already paid by another payment intent; left as it is"
        ),
        (Payment::Unpaid, _) => {
            appointment.payment = Payment::Paid;
            appointment.payment_intent = Some(intent_id.to_string());
            tracing::info!(
                appointment = appointment_id,
                intent = intent_id,
                event = event_id,
                "appointment paid"
            );
        }
    }
    Json(serde_json::json!({
        "received": true,
        "appointment_id": appointment_id,
        "payment": "paid",
    }))
}

/// Who still calls deprecated versions: the contact list before the sunset (admins only).
async fn deprecations(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json((state.deprecations)().await)
}

/// The migration guide the deprecation headers link to.
async fn migration_guide() -> &'static str {
    "Migrating from v1 to v2\n\n\
     v1 is deprecated since 2026-07-01 and is removed on 2026-12-31 (the Sunset header).\n\
     Replace /api/v1/ with /api/v2/ in your paths. The v2 appointment carries `status`,\n\
     `patient_id`, `provider {id, name}` and `payment` instead of v1's `provider_name`.\n\
     Dated revisions of v2 are chosen with the `Api-Version` header (e.g. 2024-04-10).\n"
}

async fn no_route() -> Problem {
    Problem::not_found("No route matches this path.")
}

async fn method_not_allowed() -> Problem {
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "This route does not take this method.",
    )
}

// ---------------------------------------------------------------------------------------------
// The app
// ---------------------------------------------------------------------------------------------

/// Conditional requests on appointments, as configured (a strong ETag on every `GET`,
/// `If-Match` required on `PUT`), with the appointments' own validators: the layer looks the
/// current ETag up in them (the same digest the `GET` answer gets) rather than learning it from
/// answers, so an update made any other way is never hidden behind a stale ETag.
fn conditional<V: ValidatorStore>(
    config: &ConditionalConfig,
    store: V,
    state: &AppState,
) -> Result<ConditionalLayer<V>, api_policy::ConfigError> {
    let state = state.clone();
    config
        .builder(store)?
        .lookup(move |resource| {
            let current = current_appointment(&state, resource.param("id").unwrap_or_default());
            async move { Ok(current) }
        })
        .build()
}

/// The appointment's v2 representation's validators, as the `GET` handler's answer gets them.
fn current_appointment(state: &AppState, id: &str) -> Current {
    let db = state.db();
    let Some(appointment) = db.appointments.get(id) else {
        return Current::Missing;
    };
    match serde_json::to_vec(&appointment.v2(&db.providers)) {
        Ok(json) => Current::Exists(StoredValidators {
            etag: Some(EntityTag::digest(&json)),
            last_modified: None,
        }),
        // Serialising plain strings cannot fail; if it did, no ETag can match.
        Err(_) => Current::Exists(StoredValidators::default()),
    }
}

/// The report of `GET /admin/deprecations`, over the layer's store.
fn deprecation_report<V: VersionPinStore>(layer: Option<VersioningLayer<V>>) -> DeprecationReport {
    Arc::new(move || {
        let layer = layer.clone();
        Box::pin(async move {
            let mut versions = Vec::new();
            let Some(layer) = layer else {
                return serde_json::json!({ "deprecated": versions });
            };
            for version in layer.deprecated_versions() {
                let callers = match layer.usage(version, 30).await {
                    Ok(usage) => serde_json::to_value(usage).unwrap_or_default(),
                    Err(error) => serde_json::json!({ "error": error.to_string() }),
                };
                let deprecation = layer.deprecation(version);
                versions.push(serde_json::json!({
                    "version": version.to_string(),
                    "deprecated_since": deprecation.map(|d| httpdate::fmt_http_date(d.deprecated_at())),
                    "sunset": deprecation.and_then(|d| d.sunset_at()).map(httpdate::fmt_http_date),
                    "migration_guide": deprecation.and_then(|d| d.migration_guide()),
                    "days": 30,
                    "callers": callers,
                }));
            }
            serde_json::json!({ "deprecated": versions })
        })
    })
}

/// Copies axum's `ConnectInfo` into the crate's [`PeerAddr`], so anonymous callers are keyed by IP
/// without the crate's `axum` feature.
fn with_peer_addr(mut request: Request) -> Request {
    if let Some(ConnectInfo(addr)) = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .copied()
    {
        request.extensions_mut().insert(PeerAddr(addr));
    }
    request
}

/// The routes behind the policies; the Stripe webhook checks signatures with
/// `stripe_webhook_secret` and de-duplicates events in `events`. Serve with
/// `into_make_service_with_connect_info::<SocketAddr>()` so anonymous callers have an address.
fn app<B: StackBackend>(
    state: AppState,
    policies: ConfiguredStack<B>,
    events: B::Idempotency,
    metrics: PrometheusHandle,
    stripe_webhook_secret: &str,
) -> Result<Router, api_policy::ConfigError> {
    let webhook = WebhookLayer::stripe(events, stripe_webhook_secret).build()?;
    Ok(Router::new()
        .route("/health", get(health))
        .route("/api/v1/appointments/{id}", get(get_appointment_v1))
        .route("/api/v2/appointments", post(book_appointment))
        .route(
            "/api/v2/appointments/{id}",
            get(get_appointment_v2).put(update_appointment),
        )
        .route("/api/v2/patients/{id}", get(get_patient))
        .route("/webhooks/stripe", post(stripe_webhook).layer(webhook))
        .route("/admin/deprecations", get(deprecations))
        .route(
            "/metrics",
            get(move || {
                let text = metrics.render();
                async move { ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text) }
            }),
        )
        .route("/docs/migrate-to-v2", get(migration_guide))
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        .layer(
            // `PolicyStack` orders the layers (audit, auth, rate limit, versioning, idempotency,
            // conditional requests); each wraps the body it gets in a `PolicyBody`, hence
            // `StackBody` unwrapped here.
            ServiceBuilder::new()
                .map_request(with_peer_addr)
                .map_response(|response: Response<StackBody<Body>>| response.map(Body::new))
                .layer(policies),
        ))
}

/// Freshly minted tokens for the start-up hints, named as the shell variables the hints use.
struct DemoToken {
    var: &'static str,
    sub: &'static str,
    role: Role,
    tier: Tier,
    token: String,
}

/// How long the printed tokens last.
const DEMO_TOKEN_TTL_SECS: u64 = 3600;

/// Tokens for the start-up hints, signed with the configured HS256 secret; none when the
/// configuration verifies keys from elsewhere (their signing keys are the issuer's).
fn demo_tokens(
    config: &StackConfig,
) -> Result<Vec<DemoToken>, Box<dyn std::error::Error + Send + Sync>> {
    let Some(jwt) = &config.jwt else {
        return Ok(Vec::new());
    };
    let secret = match (&jwt.hs256_secret, &jwt.hs256_secret_env) {
        (Some(secret), _) => secret.clone(),
        (None, Some(var)) => std::env::var(var)?,
        (None, None) => return Ok(Vec::new()),
    };
    let issuer = jwt.issuer.first().map_or("", String::as_str);
    let audience = jwt.audience.first().map_or("", String::as_str);
    [
        ("PATIENT", "pat_1", Role::Patient, Tier::Free),
        ("DOCTOR", "prv_1", Role::Doctor, Tier::Pro),
        ("ADMIN", "admin_1", Role::Admin, Tier::Pro),
    ]
    .into_iter()
    .map(|(var, sub, role, tier)| {
        let token = mint_token::mint(&TokenSpec {
            secret: &secret,
            issuer,
            audience,
            sub,
            role,
            tier,
            scope: None,
            ttl_secs: DEMO_TOKEN_TTL_SECS,
        })?;
        Ok(DemoToken {
            var,
            sub,
            role,
            tier,
            token,
        })
    })
    .collect()
}

fn print_usage(
    addr: SocketAddr,
    cli: &Cli,
    config: &StackConfig,
    store: &str,
    tokens: &[DemoToken],
) {
    let base = format!("http://{addr}");
    let json = "-H 'Content-Type: application/json'";
    let origin = cli
        .config
        .as_ref()
        .map_or("built in".to_string(), |p| p.display().to_string());
    println!("appointments API listening on {base} (policies: {origin}; state store: {store})");
    let mut booking = "?".to_string();
    if let Some(limits) = &config.rate_limit {
        let tiers: Vec<String> = limits
            .tiers
            .iter()
            .map(|(tier, quota)| format!("{tier} {quota}"))
            .collect();
        let routes: Vec<String> = limits
            .routes
            .iter()
            .filter_map(|r| Some(format!("{} {}", r.route, r.limit.as_ref()?)))
            .collect();
        if let Some(limit) = limits
            .routes
            .iter()
            .find(|r| r.name.as_deref() == Some("booking"))
            .and_then(|r| r.limit.clone())
        {
            booking = limit;
        }
        println!(
            "quotas: {}; per caller on {}",
            tiers.join(", "),
            routes.join(", ")
        );
    }
    let clients: Vec<String> = config
        .callers
        .api_keys
        .iter()
        .filter_map(|k| {
            let tier = k.tier.as_deref().unwrap_or("default tier");
            Some(format!("{} ({tier})", k.key.as_ref()?))
        })
        .collect();
    if let (Some(header), false) = (&config.callers.api_key_header, clients.is_empty()) {
        println!("service clients: {header}: {}", clients.join(", "));
    }
    if let Some(jwt) = &config.jwt {
        println!(
            "tokens: iss {}, aud {}",
            jwt.issuer.join(" or "),
            jwt.audience.join(" or ")
        );
    }
    if tokens.is_empty() {
        let url = cli.jwks_url.as_deref().unwrap_or("the configured JWKS");
        println!(
            "tokens: verified with the keys at {url}; set PATIENT (sub pat_1, role patient) and DOCTOR (role doctor) to tokens from that issuer"
        );
    } else {
        let published = config
            .jwt
            .as_ref()
            .and_then(|jwt| jwt.hs256_secret.as_deref())
            == Some(mint_token::DEV_SECRET);
        if published {
            println!(
                "tokens: HS256 with the published development secret; pass --jwt-secret beyond a local try-out"
            );
        }
        println!(
            "tokens valid for {} min (paste into your shell):",
            DEMO_TOKEN_TTL_SECS / 60
        );
        for t in tokens {
            println!(
                "  {}={}    # sub {}, role {}, tier {}",
                t.var,
                t.token,
                t.sub,
                t.role.as_str(),
                t.tier.as_str()
            );
        }
        println!(
            "more (add --secret/--issuer/--audience if you changed the server's): \
             cargo run -q --example mint_token --features jwt -- --role patient --sub pat_2"
        );
    }
    // Shell variables, set from the lines above, keep the commands short.
    let patient = "-H \"Authorization: Bearer $PATIENT\"";
    let doctor = "-H \"Authorization: Bearer $DOCTOR\"";
    println!("try:");
    println!("  curl -i {base}/health");
    println!(
        "  curl -i {base}/api/v1/appointments/apt_1    # v1: Deprecation, Sunset and Link headers"
    );
    println!(
        "  curl -i -H 'Api-Version: 2024-04-10' {base}/api/v2/appointments/apt_1    # a dated v2 revision"
    );
    println!(
        "  curl -s -H \"Authorization: Bearer $ADMIN\" {base}/admin/deprecations    # who still calls v1"
    );
    println!(
        "  curl -i {base}/api/v2/appointments/apt_2    # ETag and Cache-Control; send the ETag back:"
    );
    println!(
        "  curl -i -H 'If-None-Match: \"<etag>\"' {base}/api/v2/appointments/apt_2    # 304, no body"
    );
    println!(
        "  curl -i -X PUT -H 'If-Match: \"<etag>\"' {json} -d '{{\"status\":\"confirmed\"}}' {base}/api/v2/appointments/apt_2    # 200 with the new ETag; 428 without If-Match, 412 once stale"
    );
    println!("  curl -i {patient} {base}/api/v2/patients/pat_1    # 200: their own record");
    println!("  curl -i {patient} {base}/api/v2/patients/pat_2    # 403: someone else's");
    println!(
        "  curl -i {doctor} {base}/api/v2/patients/pat_2     # 200: doctors read every record"
    );
    println!("  curl -i {base}/api/v2/patients/pat_1    # 401: no token");
    println!(
        "  curl -i -H 'X-Api-Key: demo-free-key' {base}/api/v2/appointments/apt_1    # a service client"
    );
    println!(
        "  curl -i -X POST {base}/api/v2/appointments {patient} {json} -H 'Idempotency-Key: booking-1' \
         -d '{{\"slot_id\":\"slot_2026_12_02_1000\",\"patient_id\":\"pat_1\",\"reason\":\"Annual check-up\"}}'    \
         # 201; run it again: the same 201, replayed (Idempotent-Replayed: true), nothing booked twice"
    );
    println!(
        "  (booking needs an Idempotency-Key: 400 without; the same key with another body is 422)"
    );
    println!(
        "  for i in $(seq 1 7); do curl -s -o /dev/null -w '%{{http_code}}\\n' -X POST {base}/api/v2/appointments \
         {doctor} {json} -H \"Idempotency-Key: loop-$i\" \
         -d '{{\"slot_id\":\"slot_2026_12_03_1100\",\"patient_id\":\"pat_2\",\"reason\":\"Follow-up\"}}'; done    \
         # 201, then 409 (slot taken) until the booking limit ({booking} per caller) answers 429"
    );
    // A Stripe delivery, signed in the shell as Stripe signs: HMAC-SHA256 over "{t}.{body}".
    // A secret given on the command line is not printed: the command reads it from a variable.
    let secret = if cli.stripe_webhook_secret == DEMO_WEBHOOK_SECRET {
        println!(
            "webhook: the published demo signing secret; pass --stripe-webhook-secret beyond a local try-out"
        );
        shell_quote(DEMO_WEBHOOK_SECRET)
    } else {
        println!("webhook: set STRIPE_WEBHOOK_SECRET to the --stripe-webhook-secret given");
        "\"$STRIPE_WEBHOOK_SECRET\"".to_string()
    };
    let payload = r#"{"id":"evt_1","type":"payment_intent.succeeded","data":{"object":{"id":"pi_1","metadata":{"appointment_id":"apt_1"}}}}"#;
    println!(
        "  payload={payload}; t=$(date +%s); \
         sig=$(printf '%s' \"$t.$payload\" | openssl dgst -sha256 -hmac {secret} | sed 's/^.* //'); \
         curl -i -X POST {base}/webhooks/stripe -H \"Stripe-Signature: t=$t,v1=$sig\" {json} -d \"$payload\"    \
         # 200, apt_1 paid (GET /api/v2/appointments/apt_1 shows it); again: replayed, evt_1 is handled once",
        payload = shell_quote(payload)
    );
}

/// `s` as one bash word, in single quotes.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

async fn serve<B: StackBackend>(
    cli: Cli,
    config: StackConfig,
    backend: B,
    store_name: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    let limits = serving::Limits::new(
        Duration::from_secs(cli.header_read_timeout),
        Duration::from_secs(cli.keep_alive_timeout),
        cli.max_header_bytes,
        cli.max_connections
            .unwrap_or_else(serving::default_max_connections),
    )?;
    let stack = config.build(&backend)?;
    let tokens = demo_tokens(&config).map_err(|e| format!("cannot mint the demo tokens: {e}"))?;
    let state = AppState::new(
        Duration::from_millis(cli.booking_latency_ms),
        deprecation_report(stack.versioning_layer().get().cloned()),
    );
    // The configured conditional layer, with a lookup of the appointments' own validators.
    let conditional = match &config.conditional {
        Some(section) => Some(conditional(section, backend.validator_store(), &state)?),
        None => None,
    };
    let stack = stack.conditional(Maybe(conditional));
    // Kept to seal the audit log once the last answer has left.
    let audit_log = stack.audit_layer().get().map(|audit| audit.sink().clone());
    let listener = tokio::net::TcpListener::bind(cli.addr)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", cli.addr))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, store = store_name, "listening");
    // The layers report through the `metrics` facade (with `--features metrics`); this recorder
    // renders them at `GET /metrics` in Prometheus' text format.
    let metrics = PrometheusBuilder::new()
        .install_recorder()
        .map_err(|e| format!("cannot install the metrics recorder: {e}"))?;
    let upkeep = metrics.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            upkeep.run_upkeep();
        }
    });
    let app = app::<B>(
        state,
        stack,
        backend.idempotency_store(),
        metrics,
        &cli.stripe_webhook_secret,
    )?;
    print_usage(addr, &cli, &config, store_name, &tokens);
    let make_service = |peer: SocketAddr| {
        use tower::ServiceExt as _;
        // What `into_make_service_with_connect_info` gave: the peer address, which
        // `with_peer_addr` hands to the policies for anonymous callers.
        app.clone()
            .map_request(move |mut request: http::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                request
            })
    };
    // Until Ctrl-C; then the answers in flight finish.
    serving::serve(
        listener,
        limits,
        serving::Protocols::Http1AndH2c,
        make_service,
        serving::ctrl_c(),
    )
    .await;
    if let Some(log) = audit_log {
        seal_on_exit(&log).await;
    }
    Ok(())
}

/// A last checkpoint of the audit log, when it is signed: `main` returning would not wait for
/// the writer's own.
#[cfg(feature = "audit-signing")]
async fn seal_on_exit(log: &api_policy::audit::FileSink) {
    if let Err(error) = log.checkpoint_now().await {
        tracing::error!(%error, "could not seal the audit log on exit");
    }
}

#[cfg(not(feature = "audit-signing"))]
async fn seal_on_exit(_log: &api_policy::audit::FileSink) {}

async fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    let config = load_config(&cli)?;
    match config.backend.kind {
        #[cfg(feature = "redis")]
        BackendKind::Redis => {
            let backend = config.backend.redis()?;
            serve(cli, config, backend, "redis").await
        }
        #[cfg(not(feature = "redis"))]
        BackendKind::Redis => Err("a Redis backend needs the `redis` feature: \
             cargo run --example server --features jwt,axum,redis -- --redis URL"
            .into()),
        // `jwt`, which the example requires, brings the memory backend.
        _ => {
            let backend = config.backend.memory()?;
            serve(cli, config, backend, "memory").await
        }
    }
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
