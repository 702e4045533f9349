//! A real HTTP cache (http-cache-reqwest, a private cache) against the demo server binary: the
//! cache sends `If-None-Match` on its own and the demo answers 304, until the appointment
//! changes.

mod common;

use http_cache_reqwest::{
    Cache, CacheMode, CacheOptions, HttpCache, HttpCacheOptions, MokaManager,
};
use reqwest_middleware::ClientBuilder;

async fn start_demo() -> (common::Example, String) {
    let (demo, base, _) = common::start_example("server", "/health", &[]).await;
    (demo, base)
}

fn header(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn a_private_http_cache_revalidates_against_the_demo() {
    let (_demo, base) = start_demo().await;
    // A private cache (a browser's, a mobile app's) that revalidates every use: `private`
    // answers are stored, and each reuse asks the server with the cache's own If-None-Match.
    let client = ClientBuilder::new(reqwest::Client::new())
        .with(Cache(HttpCache {
            mode: CacheMode::NoCache,
            manager: MokaManager::default(),
            options: HttpCacheOptions {
                cache_options: Some(CacheOptions {
                    shared: false,
                    ..CacheOptions::default()
                }),
                cache_status_headers: true,
                ..HttpCacheOptions::default()
            },
        }))
        .build();
    let url = format!("{base}/api/v2/appointments/apt_3");

    let first = client.get(&url).send().await.unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(header(&first, "x-cache"), "MISS");
    assert_eq!(header(&first, "cache-control"), "private, max-age=300");
    let etag = header(&first, "etag");
    assert!(etag.starts_with('"'), "{etag}");
    let remaining: u32 = header(&first, "x-ratelimit-remaining").parse().unwrap();
    let body = first.text().await.unwrap();

    for n in 1..=3 {
        let again = client.get(&url).send().await.unwrap();
        assert_eq!(again.status(), 200);
        // Served from the cache after the server's 304: the body is the stored one, and the
        // 304's headers (the rate limiter counts each round trip) were merged into it.
        assert_eq!(header(&again, "x-cache"), "HIT", "revalidation {n}");
        assert_eq!(header(&again, "etag"), etag);
        let now: u32 = header(&again, "x-ratelimit-remaining").parse().unwrap();
        assert_eq!(now, remaining - n, "each reuse asked the server");
        assert_eq!(again.text().await.unwrap(), body);
    }

    // The appointment changes (a conditional PUT, as the demo requires): the next
    // revalidation gets the new representation, not a 304.
    let put = reqwest::Client::new()
        .put(&url)
        .header("if-match", &etag)
        .header("content-type", "application/json")
        .body(r#"{"status":"confirmed"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200);
    let new_etag = header(&put, "etag");
    assert_ne!(new_etag, etag);
    let changed = client.get(&url).send().await.unwrap();
    assert_eq!(changed.status(), 200);
    assert_eq!(header(&changed, "x-cache"), "MISS", "a 200, not a 304");
    assert_eq!(header(&changed, "etag"), new_etag);
    assert!(changed.text().await.unwrap().contains("\"confirmed\""));
}

/// `GET /metrics` on the demo: the layers' counters move with traffic.
#[tokio::test]
async fn the_demo_metrics_move_under_traffic() {
    let (_demo, base) = start_demo().await;
    let scrape = || async {
        reqwest::get(format!("{base}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    let count = |text: &str, labels: &str| {
        text.lines()
            .find(|l| l.starts_with("api_policy_decisions_total") && l.contains(labels))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let before = scrape().await;
    for _ in 0..5 {
        reqwest::get(format!("{base}/api/v1/appointments/apt_1"))
            .await
            .unwrap();
    }
    let after = scrape().await;
    let deprecated = "layer=\"versioning\",outcome=\"deprecated\"";
    assert_eq!(
        count(&after, deprecated) - count(&before, deprecated),
        5.0,
        "{after}"
    );
    let written = "layer=\"audit\",outcome=\"written\"";
    assert_eq!(count(&after, written) - count(&before, written), 5.0);
}

/// The demo's PHI answers and shared caches: v1 states no freshness of its own, so the audit
/// layer marks it `no-store`; v2's own `private, max-age=300` is kept, on its 200 and its 304.
#[tokio::test]
async fn phi_answers_of_the_demo_stay_out_of_shared_caches() {
    let (_demo, base) = start_demo().await;
    let client = reqwest::Client::new();
    let v1 = client
        .get(format!("{base}/api/v1/appointments/apt_2"))
        .send()
        .await
        .unwrap();
    assert_eq!(v1.status(), 200);
    assert_eq!(header(&v1, "cache-control"), "no-store");

    let url = format!("{base}/api/v2/appointments/apt_2");
    let v2 = client.get(&url).send().await.unwrap();
    assert_eq!(v2.status(), 200);
    assert_eq!(header(&v2, "cache-control"), "private, max-age=300");
    let etag = header(&v2, "etag");
    let revalidated = client
        .get(&url)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(revalidated.status(), 304);
    assert_eq!(
        header(&revalidated, "cache-control"),
        "private, max-age=300"
    );
    // A refusal on a PHI route (an unknown appointment) is not stored either.
    let missing = client
        .get(format!("{base}/api/v1/appointments/apt_404"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(header(&missing, "cache-control"), "no-store");
}
