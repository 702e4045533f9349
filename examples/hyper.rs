//! The policies on a plain hyper 1 server, no framework: the PHI audit trail, JWT bearer auth
//! and a per-caller rate limit around a `service_fn`, served with hyper's HTTP/1 connection.
//!
//! ```text
//! cargo run --example hyper --features jwt -- --addr 127.0.0.1:3001 --audit-log /tmp/hyper-audit.log
//! TOKEN=$(cargo run -q --example mint_token --features jwt -- --role doctor --sub prv_1)
//! curl -i -H "Authorization: Bearer $TOKEN" http://127.0.0.1:3001/patients/pat_1   # 200
//! curl -i http://127.0.0.1:3001/patients/pat_1                                     # 401
//! ```
//!
//! Tokens are the demo's: HS256 with its published development secret, `iss`
//! `api-policy-demo`, `aud` `demo-api` (see `examples/mint_token.rs`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use api_policy::audit::{AuditLayer, FileSink};
use api_policy::auth::{Algorithm, JwtAuthLayer, Require, VerifyKey};
use api_policy::backend::MemoryBackend;
use api_policy::rate_limit::{MemoryRateLimitStore, Quota, RateLimitLayer};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tower::ServiceBuilder;

#[allow(dead_code)]
#[path = "mint_token.rs"]
mod mint_token;

/// The handler: a patient record for a doctor, 404 elsewhere.
async fn handle(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = request.uri().path();
    let (status, body) = match path.strip_prefix("/patients/") {
        Some(id) if !id.is_empty() && !id.contains('/') => (
            StatusCode::OK,
            format!("{{\"id\":\"{id}\",\"allergies\":[]}}"),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "{\"error\":\"not_found\"}".to_string(),
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

fn flag(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr: SocketAddr = flag("--addr")
        .unwrap_or_else(|| "127.0.0.1:3001".into())
        .parse()?;
    let audit_log =
        PathBuf::from(flag("--audit-log").unwrap_or_else(|| "audit/hyper-audit.log".into()));
    let audit = AuditLayer::builder(FileSink::builder(&audit_log).open()?)
        .phi_route_with_subject("/patients/{id}", "id")
        .build()?;
    let auth = JwtAuthLayer::builder()
        .key(VerifyKey::hmac(
            Algorithm::HS256,
            mint_token::DEV_SECRET.as_bytes(),
        )?)
        .issuer([mint_token::DEFAULT_ISSUER])
        .audience([mint_token::DEFAULT_AUDIENCE])
        .route("/patients/*", Require::any_role(["doctor", "admin"]))
        .build()?;
    let limits = RateLimitLayer::builder(MemoryRateLimitStore::new(&MemoryBackend::new()))
        .tier("default", Quota::new(5, Duration::from_secs(60)))
        .build()?;
    // Outer to inner, as the crate recommends: audit, auth, rate limit, the handler.
    let service = ServiceBuilder::new()
        .layer(audit)
        .layer(auth)
        .layer(limits)
        .service(tower::service_fn(handle));

    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!(
        "hyper server with api-policy listening on http://{}",
        listener.local_addr()?
    );
    loop {
        let (stream, _) = listener.accept().await?;
        let service = TowerToHyperService::new(service.clone());
        tokio::spawn(async move {
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            if let Err(error) = connection.await {
                eprintln!("connection error: {error}");
            }
        });
    }
}
