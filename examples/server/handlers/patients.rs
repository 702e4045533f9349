//! Reading a patient's record (PHI: a patient reads only their own).

use api_policy::auth::Access;
use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::data::AppState;
use crate::problem::{ApiError, Id, Problem, may_act_for};

pub async fn get_patient(
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
