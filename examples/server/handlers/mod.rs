//! The handlers behind the policies, one file per part of the API; here the small routes:
//! health, the migration guide, and the fallbacks.

pub mod admin;
pub mod appointments;
pub mod booking;
pub mod patients;
pub mod webhook;

use axum::Json;
use axum::http::StatusCode;

use crate::problem::Problem;

pub async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// The migration guide the deprecation headers link to.
pub async fn migration_guide() -> &'static str {
    "Migrating from v1 to v2\n\n\
     v1 is deprecated since 2026-07-01 and is removed on 2026-12-31 (the Sunset header).\n\
     Replace /api/v1/ with /api/v2/ in your paths. The v2 appointment carries `status`,\n\
     `patient_id`, `provider {id, name}` and `payment` instead of v1's `provider_name`.\n\
     Dated revisions of v2 are chosen with the `Api-Version` header (e.g. 2024-04-10).\n"
}

pub async fn no_route() -> Problem {
    Problem::not_found("No route matches this path.")
}

pub async fn method_not_allowed() -> Problem {
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "This route does not take this method.",
    )
}
