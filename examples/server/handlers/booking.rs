//! Booking an appointment (`POST /api/v2/appointments`, behind the idempotency layer).

use api_policy::auth::Access;
use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::data::{AppState, Appointment, Payment, Status};
use crate::problem::{ApiError, ApiJson, Problem, may_act_for};
use crate::validate::{is_reason, is_slot_id};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Booking {
    slot_id: String,
    patient_id: String,
    reason: String,
}

pub async fn book_appointment(
    State(state): State<AppState>,
    access: Access,
    ApiJson(booking): ApiJson<Booking>,
) -> Result<Response, ApiError> {
    // Before validation and the lookups, so a patient learns nothing about other patients' ids.
    access.ensure(
        may_act_for(access.principal(), &booking.patient_id),
        "A patient may book only for themselves.",
    )?;
    Ok(book(&state, booking).await?)
}

async fn book(state: &AppState, booking: Booking) -> Result<Response, Problem> {
    if !is_slot_id(&booking.slot_id) {
        return Err(Problem::invalid(
            "slot_id",
            "slot_id must match ^slot_[a-z0-9_]+$",
        ));
    }
    if !is_reason(&booking.reason) {
        return Err(Problem::invalid(
            "reason",
            "reason must be 1 to 500 characters without HTML",
        ));
    }

    // The scheduling system is slow. The slot is checked and taken under one lock afterwards, so
    // two bookings racing for it cannot both win.
    tokio::time::sleep(state.booking_latency).await;

    let mut guard = state.db();
    let db = &mut *guard;
    if !db.patients.contains_key(&booking.patient_id) {
        return Err(Problem {
            field: Some("patient_id"),
            ..Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "unknown_patient",
                "No patient has this id.",
            )
        });
    }
    let id = format!("apt_{}", db.next_appointment);
    let Some(slot) = db.slots.get_mut(&booking.slot_id) else {
        return Err(Problem {
            field: Some("slot_id"),
            ..Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "unknown_slot",
                "No slot has this id.",
            )
        });
    };
    if slot.booked_by.is_some() {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "slot_unavailable",
            "This slot is already booked; pick another.",
        ));
    }
    slot.booked_by = Some(id.clone());
    let appointment = Appointment {
        id: id.clone(),
        slot_id: Some(booking.slot_id.clone()),
        date: slot.start.clone(),
        status: Status::Scheduled,
        patient_id: booking.patient_id,
        provider_id: slot.provider_id.clone(),
        payment: Payment::Unpaid,
        payment_intent: None,
        reason: booking.reason,
    };
    db.next_appointment += 1;
    let body = appointment.v2(&db.providers);
    db.appointments.insert(id.clone(), appointment);
    tracing::info!(appointment = %id, slot = %booking.slot_id, "appointment booked");
    let location = format!("/api/v2/appointments/{id}");
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(body),
    )
        .into_response())
}
