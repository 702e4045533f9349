//! `examples/grpc.rs` called by a tonic client: OK, UNAUTHENTICATED, PERMISSION_DENIED and
//! RESOURCE_EXHAUSTED, and the audit log holds every call.

mod common;

use http::uri::PathAndQuery;
use tonic::client::Grpc;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};
use tonic_prost::ProstCodec;

#[derive(Clone, PartialEq, prost::Message)]
struct GetPatient {
    #[prost(string, tag = "1")]
    id: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Patient {
    #[prost(string, tag = "1")]
    id: String,
    #[prost(string, tag = "2")]
    name: String,
}

fn token(sub: &str, role: &str) -> String {
    common::hs256_token(
        common::DEMO_SECRET,
        common::DEMO_ISSUER,
        common::DEMO_AUDIENCE,
        sub,
        role,
    )
}

async fn get(channel: &Channel, bearer: Option<&str>, id: &str) -> Result<Patient, Status> {
    let mut grpc = Grpc::new(channel.clone());
    grpc.ready().await.unwrap();
    let mut request = Request::new(GetPatient { id: id.into() });
    if let Some(token) = bearer {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    grpc.unary(
        request,
        PathAndQuery::from_static("/patients.Patients/Get"),
        ProstCodec::<GetPatient, Patient>::default(),
    )
    .await
    .map(tonic::Response::into_inner)
}

#[tokio::test]
async fn the_grpc_example_answers_with_grpc_statuses() {
    let (_server, base, audit_log) = common::start_example("grpc", "", &[]).await;
    let channel = Channel::from_shared(base).unwrap().connect().await.unwrap();

    let anonymous = get(&channel, None, "pat_1").await.unwrap_err();
    assert_eq!(anonymous.code(), Code::Unauthenticated, "{anonymous:?}");
    let patient = token("pat_1", "patient");
    let denied = get(&channel, Some(&patient), "pat_1").await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");

    let doctor = token("prv_1", "doctor");
    for _ in 0..5 {
        let found = get(&channel, Some(&doctor), "pat_7").await.unwrap();
        assert_eq!(
            (found.id.as_str(), found.name.as_str()),
            ("pat_7", "Patient pat_7")
        );
    }
    let limited = get(&channel, Some(&doctor), "pat_7").await.unwrap_err();
    assert_eq!(limited.code(), Code::ResourceExhausted, "{limited:?}");

    let files = api_policy::audit::FileSink::files(&audit_log).unwrap();
    let head = api_policy::audit::FileSink::head(&audit_log);
    let verified = api_policy::audit::chain::verify(&files, head).unwrap();
    assert_eq!(verified.records, 8, "one record per call");
    let log = std::fs::read_to_string(&audit_log).unwrap();
    assert!(
        log.contains("\"action\":\"POST /patients.Patients/*\""),
        "{log}"
    );
    for refusal in [
        "unauthenticated",
        "insufficient_scope",
        "rate_limit_exceeded",
    ] {
        assert!(
            log.contains(refusal),
            "{refusal} missing from the audit log"
        );
    }
}
