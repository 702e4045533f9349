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

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tower::ServiceBuilder;

mod support;

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
