//! Reading an appointment (v1 and v2 shapes) and updating it (`PUT`, behind `If-Match`).

use api_policy::conditional::EntityTag;
use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::data::{AppState, AppointmentV1, AppointmentV2, Status};
use crate::problem::{ApiJson, Id, Problem};
use crate::validate::is_utc_datetime;

pub async fn get_appointment_v1(
    State(state): State<AppState>,
    Id(id): Id,
) -> Result<Json<AppointmentV1>, Problem> {
    let db = state.db();
    let appointment = db
        .appointments
        .get(&id)
        .ok_or_else(|| Problem::not_found("No appointment has this id."))?;
    Ok(Json(appointment.v1(&db.providers)))
}

pub async fn get_appointment_v2(
    State(state): State<AppState>,
    Id(id): Id,
) -> Result<Json<AppointmentV2>, Problem> {
    let db = state.db();
    let appointment = db
        .appointments
        .get(&id)
        .ok_or_else(|| Problem::not_found("No appointment has this id."))?;
    Ok(Json(appointment.v2(&db.providers)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateAppointment {
    date: Option<String>,
    status: Option<String>,
}

pub async fn update_appointment(
    State(state): State<AppState>,
    Id(id): Id,
    ApiJson(update): ApiJson<UpdateAppointment>,
) -> Result<Response, Problem> {
    if update.date.is_none() && update.status.is_none() {
        return Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            "send at least one of date, status",
        ));
    }
    if update.date.as_deref().is_some_and(|d| !is_utc_datetime(d)) {
        return Err(Problem::invalid(
            "date",
            "date must be UTC, as YYYY-MM-DDTHH:MM:SSZ",
        ));
    }
    let status = match update.status.as_deref() {
        None => None,
        Some(s) => Some(Status::parse(s).ok_or_else(|| {
            Problem::invalid(
                "status",
                "status must be one of scheduled, confirmed, checked_in, completed, cancelled",
            )
        })?),
    };

    let mut guard = state.db();
    let db = &mut *guard;
    let appointment = db
        .appointments
        .get_mut(&id)
        .ok_or_else(|| Problem::not_found("No appointment has this id."))?;
    if appointment.status == Status::Cancelled {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "appointment_cancelled",
            "A cancelled appointment cannot be changed; book a new one.",
        ));
    }
    if let Some(date) = update.date {
        appointment.date = date;
    }
    if let Some(status) = status {
        appointment.status = status;
        if status == Status::Cancelled {
            // Free the slot for others.
            if let Some(slot) = appointment
                .slot_id
                .take()
                .and_then(|s| db.slots.get_mut(&s))
            {
                slot.booked_by = None;
            }
        }
    }
    tracing::info!(appointment = %id, "appointment updated");
    // The new representation's ETag, as a GET of it gets, so the client can update again.
    let body = appointment.v2(&db.providers);
    let etag = serde_json::to_vec(&body)
        .map(|json| EntityTag::digest(&json).to_header_value())
        .ok();
    let mut response = Json(body).into_response();
    if let Some(etag) = etag {
        response.headers_mut().insert(header::ETAG, etag);
    }
    Ok(response)
}
