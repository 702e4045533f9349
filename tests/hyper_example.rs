//! `examples/hyper.rs`, the policies on a plain hyper 1 server, over real TCP: a doctor's token
//! passes, no token is 401, a patient's is 403, the sixth request in a minute is 429, and the
//! audit trail holds every one of them.

mod common;

fn token(sub: &str, role: &str) -> String {
    common::hs256_token(
        common::DEMO_SECRET,
        common::DEMO_ISSUER,
        common::DEMO_AUDIENCE,
        sub,
        role,
    )
}

#[tokio::test]
async fn the_hyper_example_serves_the_policies() {
    let (_server, base, audit_log) = common::start_example("hyper", "/", &[]).await;
    let client = reqwest::Client::new();
    let get = |bearer: Option<String>| {
        let mut request = client.get(format!("{base}/patients/pat_1"));
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(get(None).await, 401);
    assert_eq!(get(Some(token("pat_1", "patient"))).await, 403);
    let doctor = token("prv_1", "doctor");
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(get(Some(doctor.clone())).await);
    }
    assert_eq!(
        statuses,
        [200, 200, 200, 200, 200, 429],
        "5 a minute per caller"
    );
    // Fail-closed: every answer above left only after its record was on disk.
    let files = api_policy::audit::FileSink::files(&audit_log).unwrap();
    let head = api_policy::audit::FileSink::head(&audit_log);
    let verified = api_policy::audit::chain::verify(&files, head).unwrap();
    assert_eq!(verified.records, 8, "one record per request");
    let log = std::fs::read_to_string(&audit_log).unwrap();
    for status in ["401", "403", "429", "200"] {
        let field = format!("\"status\":{status}");
        assert!(log.contains(&field), "{field} missing from the audit log");
    }
}
