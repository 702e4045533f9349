//! The policies on a plain hyper 1 server, no framework: the PHI audit trail, JWT bearer auth
//! and a per-caller rate limit around a `service_fn`, served by hyper-util's connection builder
//! (HTTP/1.1 and h2c) within connection limits: `--header-read-timeout SECS` (10),
//! `--keep-alive-timeout SECS` (5), `--max-header-bytes BYTES` (65536), `--max-connections N`
//! (1024); see `examples/support/serving.rs`.
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

use api_policy::principal::PeerAddr;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use tower::{ServiceBuilder, ServiceExt};

mod support;

use support::serving::{self, Protocols};
use support::{Policies, flag, policies};

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

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr: SocketAddr = flag("--addr")
        .unwrap_or_else(|| "127.0.0.1:3001".into())
        .parse()?;
    let connection_limits = support::limits()?;
    support::init_logging();
    let Policies {
        audit,
        auth,
        limits,
    } = policies(
        "/patients/{id}",
        Some("id"),
        "/patients/*",
        "audit/hyper-audit.log",
    )?;
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
    let make_service = |peer| {
        // The peer address, for the audit trail's client IP and IP-keyed anonymous callers.
        service
            .clone()
            .map_request(move |mut request: Request<Incoming>| {
                request.extensions_mut().insert(PeerAddr(peer));
                request
            })
    };
    serving::serve(
        listener,
        connection_limits,
        Protocols::Http1AndH2c,
        make_service,
        serving::ctrl_c(),
    )
    .await;
    Ok(())
}
