//! What the full stack allocates per request, counted by a counting allocator: a GET with an
//! HS256 token through JWT auth, the rate limit with its headers, versioning, conditional
//! requests and buffered audit (the load test's `full`), against the same handler behind an
//! empty `PolicyStack`. The budget pins today's count: a change that adds an allocation to every
//! request fails here and says how many it added.
mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::convert::Infallible;
use std::future::Ready;
use std::sync::atomic::{AtomicUsize, Ordering};

use api_policy::backend::MemoryBackend;
use api_policy::stack::{PolicyStack, StackConfig};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tower::{Service, ServiceBuilder, ServiceExt};

/// The system allocator, counting the blocks it hands out (a `realloc` that moves counts too).
struct Counting;

static BLOCKS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to `System`; the counter only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        BLOCKS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract for `alloc` is passed on as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract for `dealloc` is passed on as is.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        BLOCKS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract for `realloc` is passed on as is.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const SECRET: &str = "allocation-count-secret-0123456789";

/// The load test's `full` configuration (examples/loadtest.rs), its audit log in `dir`.
fn full_config(dir: &std::path::Path) -> StackConfig {
    let text = format!(
        r#"
[callers]
api_key_header = "x-api-key"
[[callers.api_keys]]
key = "k_load"
id = "load"
tier = "default"

[jwt]
issuer = ["load"]
audience = ["api"]
hs256_secret = "{SECRET}"

[rate_limit]
[rate_limit.tiers]
default = "1000000/s"

[versioning]
default = "2"
path_prefix = true
header = "Api-Version"
[[versioning.versions]]
version = "2"

[[conditional.resources]]
route = "/api/v2/patients/{{id}}"
cache_control = "private, max-age=300"

[audit]
log = "{log}"
durability = "buffered"
[[audit.routes]]
route = "/api/v2/patients/{{id}}"
subject = "id"
"#,
        log = dir.join("audit.log").display()
    );
    toml::from_str(&text).expect("the configuration parses")
}

fn request(token: &str) -> Request<Full<Bytes>> {
    // A static target, as a server's parser hands over a shared one: cloning it (the audit
    // record keeps the target as it arrived) allocates nothing.
    Request::get(http::Uri::from_static("/api/v2/patients/pat_1"))
        .header("authorization", format!("Bearer {token}"))
        .header("x-api-key", "k_load")
        .body(Full::default())
        .expect("a valid request")
}

/// Blocks allocated per request by `service`, over `rounds` requests after a warm-up; each
/// request is built before counting starts, and its answer is checked and read to the end.
async fn blocks_per_request<S, B>(service: S, token: &str, rounds: usize) -> f64
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>, Error = Infallible> + Clone,
    B: http_body::Body<Data = Bytes>,
    B::Error: std::fmt::Debug,
{
    for _ in 0..200 {
        let answer = service.clone().oneshot(request(token)).await;
        assert_eq!(answer.map(|a| a.status()), Ok(StatusCode::OK));
    }
    let requests: Vec<_> = (0..rounds).map(|_| request(token)).collect();
    let before = BLOCKS.load(Ordering::Relaxed);
    for request in requests {
        let Ok(answer) = service.clone().oneshot(request).await;
        // Every counted request is served, not refused on a cheaper path.
        assert_eq!(answer.status(), StatusCode::OK);
        let body = answer.into_body().collect().await;
        assert!(body.is_ok(), "the answer's body reads to its end");
    }
    let after = BLOCKS.load(Ordering::Relaxed);
    (after - before) as f64 / rounds as f64
}

/// The handler of the load test: a short JSON body.
fn answer(_request: Request<Full<Bytes>>) -> Ready<Result<Response<Full<Bytes>>, Infallible>> {
    std::future::ready(Ok(Response::new(Full::new(Bytes::from_static(
        br#"{"id":"pat_1","name":"Ada"}"#,
    )))))
}

/// The policies' own allocations per request, each by design:
/// - audit: the record's draft (boxed, so every request's future stays small) and the request
///   id it mints (2);
/// - the request's extensions, one box per value (http's `Extensions`): the claims, the
///   principal and the refusal renderer (auth), the version and its source (versioning), and the
///   map itself, made once and grown once (5 + 3);
/// - the answer's extensions: the map and the principal copied to it for the audit record (2);
/// - the answer's header map, grown once to hold every policy's fields (its indices and its
///   entries, 2);
/// - the resource's normalised path, the key of its validators (1);
/// - the entity tag's header value (1), and one rate-limit number that is not among the recent
///   ones kept as header values (1).
///
/// The audit writer's work, shared by a batch, rounds to none per request; with the `metrics`
/// feature, counting each layer's decision allocates nothing either.
const POLICY_BLOCKS: f64 = 18.0;

#[tokio::test(flavor = "current_thread")]
async fn the_full_stack_allocates_no_more_per_request_than_its_budget() {
    let dir = std::env::temp_dir().join(format!("api-policy-allocations-{}", std::process::id()));
    let token = common::hs256_token(SECRET.as_bytes(), "load", "api", "dr_load", "doctor");
    let backend = MemoryBackend::new();
    let full = full_config(&dir)
        .build(&backend)
        .expect("the configuration builds");
    let rounds = 4000;

    let bare = ServiceBuilder::new()
        .layer(PolicyStack::new())
        .service_fn(answer);
    let bare = blocks_per_request(bare, &token, rounds).await;
    let policies = ServiceBuilder::new().layer(full).service_fn(answer);
    let full = blocks_per_request(policies, &token, rounds).await;

    let _ = std::fs::remove_dir_all(&dir);
    let added = full - bare;
    println!("blocks per request: empty stack {bare:.2}, full stack {full:.2}, added {added:.2}");
    assert!(
        // A batch's share of the writer's work is a fraction of a block.
        added <= POLICY_BLOCKS + 0.1,
        "the full stack allocates {added:.2} blocks per request more than an empty one; the \
         budget is {POLICY_BLOCKS}: find the new allocation (valgrind --tool=dhat names its site)"
    );
    // A budget far above the count would let allocations creep back in unseen.
    assert!(
        added > POLICY_BLOCKS - 3.0,
        "the full stack now adds only {added:.2} blocks per request: lower POLICY_BLOCKS to \
         match, so the budget keeps guarding"
    );
}
