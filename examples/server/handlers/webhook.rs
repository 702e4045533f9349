//! The Stripe webhook: a verified `payment_intent.succeeded` event marks an appointment paid.

use api_policy::idempotency::IdempotencyKey;
use axum::body::Bytes;
use axum::extract::State;
use axum::{Extension, Json};

use crate::data::{AppState, Payment};

/// `POST /webhooks/stripe`, behind the [`WebhookLayer`]: the signature is verified and the event
/// is new (a redelivery of a handled one gets the first answer without coming here).
///
/// A `payment_intent.succeeded` event marks the appointment in its
/// `data.object.metadata.appointment_id` paid by the intent `data.object.id`. Every verified
/// delivery gets a 200, even one that cannot be applied: Stripe retries any other answer for
/// days, and retrying will not make an unknown appointment known.
pub async fn stripe_webhook(
    State(state): State<AppState>,
    key: Option<Extension<IdempotencyKey>>,
    body: Bytes,
) -> Json<serde_json::Value> {
    let attempt = key.map_or(1, |Extension(key)| key.attempt);
    let ignored = |event: &str, why: String| {
        tracing::warn!(event, attempt, "Stripe event ignored: {why}");
        Json(serde_json::json!({ "received": true, "ignored": why }))
    };
    // The layer found a string `id` in it, so it is JSON.
    let Ok(event) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return ignored("?", "the body is not JSON".into());
    };
    let event_id = event["id"].as_str().unwrap_or_default();
    let kind = event["type"].as_str().unwrap_or_default();
    if kind != "payment_intent.succeeded" {
        tracing::info!(event = event_id, kind, "Stripe event not handled here");
        return Json(serde_json::json!({
            "received": true,
            "ignored": format!("event type {kind} is not handled"),
        }));
    }
    let intent = &event["data"]["object"];
    let Some(appointment_id) = intent["metadata"]["appointment_id"].as_str() else {
        return ignored(
            event_id,
            "no data.object.metadata.appointment_id in the event".into(),
        );
    };
    let Some(intent_id) = intent["id"].as_str() else {
        return ignored(event_id, "no data.object.id in the event".into());
    };
    let mut db = state.db();
    let Some(appointment) = db.appointments.get_mut(appointment_id) else {
        return ignored(event_id, format!("no appointment {appointment_id}"));
    };
    match (appointment.payment, appointment.payment_intent.as_deref()) {
        // Another event for the same payment (Stripe may send one twice under two ids).
        (Payment::Paid, Some(paid_by)) if paid_by == intent_id => {}
        (Payment::Paid, paid_by) => tracing::warn!(
            appointment = appointment_id,
            paid_by,
            intent = intent_id,
            "appointment already paid by another payment intent; left as it is"
        ),
        (Payment::Unpaid, _) => {
            appointment.payment = Payment::Paid;
            appointment.payment_intent = Some(intent_id.to_string());
            tracing::info!(
                appointment = appointment_id,
                intent = intent_id,
                event = event_id,
                "appointment paid"
            );
        }
    }
    Json(serde_json::json!({
        "received": true,
        "appointment_id": appointment_id,
        "payment": "paid",
    }))
}
