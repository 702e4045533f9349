//! The policies in front of a tonic gRPC service: the PHI audit trail, JWT bearer auth and a
//! per-caller rate limit, as tower layers around tonic's routes. Refusals reach gRPC clients as
//! trailers-only answers with `grpc-status` (UNAUTHENTICATED, PERMISSION_DENIED,
//! RESOURCE_EXHAUSTED). No protoc at build time: the messages are `prost` derives and the
//! service is written out by hand, as tonic's generated code would be. tonic's routes are served
//! as a tower service by hyper-util's connection builder (HTTP/2 only) within connection limits:
//! `--header-read-timeout SECS` (10), `--keep-alive-timeout SECS` (5), `--max-header-bytes
//! BYTES` (65536), `--max-connections N` (1024); see `examples/support/serving.rs`.
//!
//! ```text
//! cargo run --example grpc --features jwt -- --addr 127.0.0.1:50051 --audit-log /tmp/grpc-audit.log
//! ```
//!
//! The service is `patients.Patients/Get` (`GetPatient { id }` -> `Patient { id, name }`);
//! tokens are the demo's (see `examples/mint_token.rs`) and need the `doctor` role.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use api_policy::principal::PeerAddr;
use hyper::body::Incoming;
use tonic::body::Body;
use tonic::server::{Grpc, NamedService, UnaryService};
use tonic::service::Routes;
use tonic::{Request, Response, Status};
use tonic_prost::ProstCodec;
use tower::{ServiceBuilder, ServiceExt};

mod support;

use support::serving::{self, Protocols};
use support::{Policies, flag, policies};

/// `patients.GetPatient`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct GetPatient {
    /// The patient id.
    #[prost(string, tag = "1")]
    pub id: String,
}

/// `patients.Patient`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Patient {
    /// The patient id.
    #[prost(string, tag = "1")]
    pub id: String,
    /// The patient's name.
    #[prost(string, tag = "2")]
    pub name: String,
}

/// The `Get` method.
struct Get;

impl UnaryService<GetPatient> for Get {
    type Response = Patient;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Patient>, Status>> + Send>>;

    fn call(&mut self, request: Request<GetPatient>) -> Self::Future {
        let id = request.into_inner().id;
        Box::pin(async move {
            if id.is_empty() {
                return Err(Status::invalid_argument("id is required"));
            }
            Ok(Response::new(Patient {
                name: format!("Patient {id}"),
                id,
            }))
        })
    }
}

/// The `patients.Patients` service, routed by path as generated code routes it.
#[derive(Clone, Default)]
struct Patients;

impl NamedService for Patients {
    const NAME: &'static str = "patients.Patients";
}

impl tower::Service<http::Request<Body>> for Patients {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        match request.uri().path() {
            "/patients.Patients/Get" => Box::pin(async move {
                let mut grpc = Grpc::new(ProstCodec::<Patient, GetPatient>::default());
                Ok(grpc.unary(Get, request).await)
            }),
            _ => Box::pin(async { Ok(Status::unimplemented("no such method").into_http()) }),
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr: SocketAddr = flag("--addr")
        .unwrap_or_else(|| "127.0.0.1:50051".into())
        .parse()?;
    let connection_limits = support::limits()?;
    support::init_logging();
    let Policies {
        audit,
        auth,
        limits,
    } = policies(
        "/patients.Patients/*",
        None,
        "/patients.Patients/*",
        "audit/grpc-audit.log",
    )?;
    // tonic's routes as a plain tower service, behind the policies (outer to inner, as the
    // crate recommends: audit, auth, rate limit, the service), served over HTTP/2 within the
    // connection limits.
    let service = ServiceBuilder::new()
        .layer(audit)
        .layer(auth)
        .layer(limits)
        .service(Routes::new(Patients).prepare());
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!(
        "gRPC server with api-policy listening on {}",
        listener.local_addr()?
    );
    let make_service = |peer| {
        // The peer address, for the audit trail's client IP.
        service
            .clone()
            .map_request(move |mut request: http::Request<Incoming>| {
                request.extensions_mut().insert(PeerAddr(peer));
                request
            })
    };
    serving::serve(
        listener,
        connection_limits,
        Protocols::Http2Only,
        make_service,
        serving::ctrl_c(),
    )
    .await;
    Ok(())
}
