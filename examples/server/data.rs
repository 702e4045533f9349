//! The data: appointments, patients, providers and slots, seeded in memory, their v1 and v2
//! shapes, and the state the handlers share.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Scheduled,
    Confirmed,
    CheckedIn,
    Completed,
    Cancelled,
}

impl Status {
    const NAMES: &'static [(&'static str, Status)] = &[
        ("scheduled", Status::Scheduled),
        ("confirmed", Status::Confirmed),
        ("checked_in", Status::CheckedIn),
        ("completed", Status::Completed),
        ("cancelled", Status::Cancelled),
    ];

    pub fn parse(s: &str) -> Option<Self> {
        Self::NAMES
            .iter()
            .find(|(name, _)| *name == s)
            .map(|(_, status)| *status)
    }
}

/// Whether an appointment has been paid for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Payment {
    Unpaid,
    Paid,
}

#[derive(Debug, Clone, Serialize)]
pub struct Provider {
    id: String,
    name: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Patient {
    id: String,
    name: String,
    date_of_birth: String,
    mrn: String,
    phone: String,
    email: String,
    allergies: Vec<String>,
    primary_provider_id: String,
}

#[derive(Debug)]
pub struct Slot {
    pub provider_id: String,
    /// RFC 3339, UTC.
    pub start: String,
    /// The appointment holding the slot.
    pub booked_by: Option<String>,
}

#[derive(Debug)]
pub struct Appointment {
    pub id: String,
    /// The slot held; released when the appointment is cancelled.
    pub slot_id: Option<String>,
    pub date: String,
    pub status: Status,
    pub patient_id: String,
    pub provider_id: String,
    pub payment: Payment,
    /// The Stripe payment intent that paid it, once paid.
    pub payment_intent: Option<String>,
    /// Kept for the clinical record; part of neither public shape.
    #[allow(dead_code)]
    pub reason: String,
}

/// v1 shape.
#[derive(Debug, Serialize)]
pub struct AppointmentV1 {
    id: String,
    date: String,
    provider_name: String,
}

/// v2 shape.
#[derive(Debug, Serialize)]
pub struct AppointmentV2 {
    id: String,
    date: String,
    status: Status,
    patient_id: String,
    provider: Provider,
    payment: PaymentV2,
}

/// v2 `payment`: `{"status": "unpaid"}` or `{"status": "paid", "payment_intent": "pi_..."}`.
#[derive(Debug, Serialize)]
pub struct PaymentV2 {
    status: Payment,
    #[serde(skip_serializing_if = "Option::is_none")]
    payment_intent: Option<String>,
}

#[derive(Debug, Default)]
pub struct Db {
    pub appointments: HashMap<String, Appointment>,
    pub patients: HashMap<String, Patient>,
    pub providers: HashMap<String, Provider>,
    pub slots: BTreeMap<String, Slot>,
    pub next_appointment: u64,
}

impl Db {
    /// Three providers, three patients, fifteen slots on 2026-12-01..03, `apt_1`..`apt_5` booked.
    fn seed() -> Self {
        let mut db = Db {
            next_appointment: 6,
            ..Db::default()
        };
        for (id, name) in [
            ("prv_1", "Dr. Amara Okafor"),
            ("prv_2", "Dr. Lin Chen"),
            ("prv_3", "Dr. Sofia Rossi"),
        ] {
            let provider = Provider {
                id: id.into(),
                name: name.into(),
            };
            db.providers.insert(id.into(), provider);
        }
        let patients = [
            (
                "pat_1",
                "Jane Doe",
                "1984-03-12",
                "jane.doe",
                "penicillin",
                "prv_1",
            ),
            (
                "pat_2",
                "Rahul Mehta",
                "1971-11-02",
                "rahul.mehta",
                "",
                "prv_2",
            ),
            (
                "pat_3",
                "Maria Garcia",
                "1996-07-25",
                "maria.garcia",
                "latex",
                "prv_3",
            ),
        ];
        for (n, (id, name, dob, mail, allergy, provider)) in patients.into_iter().enumerate() {
            let patient = Patient {
                id: id.into(),
                name: name.into(),
                date_of_birth: dob.into(),
                mrn: format!("MRN-{:06}", 1001 + n),
                phone: format!("+1-555-01{:02}", n + 10),
                email: format!("{mail}@example.com"),
                allergies: (!allergy.is_empty())
                    .then(|| allergy.to_string())
                    .into_iter()
                    .collect(),
                primary_provider_id: provider.into(),
            };
            db.patients.insert(id.into(), patient);
        }
        for (day, provider) in [(1, "prv_1"), (2, "prv_2"), (3, "prv_3")] {
            for (hour, minute) in [(9, 0), (9, 30), (10, 0), (10, 30), (11, 0)] {
                let id = format!("slot_2026_12_{day:02}_{hour:02}{minute:02}");
                let slot = Slot {
                    provider_id: provider.into(),
                    start: format!("2026-12-{day:02}T{hour:02}:{minute:02}:00Z"),
                    booked_by: None,
                };
                db.slots.insert(id, slot);
            }
        }
        let booked = [
            (
                "apt_1",
                "slot_2026_12_01_0900",
                "pat_1",
                Status::Confirmed,
                "Annual physical",
            ),
            (
                "apt_2",
                "slot_2026_12_01_0930",
                "pat_2",
                Status::Scheduled,
                "Blood pressure review",
            ),
            (
                "apt_3",
                "slot_2026_12_02_0900",
                "pat_3",
                Status::Scheduled,
                "Palpitations",
            ),
            (
                "apt_4",
                "slot_2026_12_02_0930",
                "pat_1",
                Status::Scheduled,
                "Cardiology follow-up",
            ),
            (
                "apt_5",
                "slot_2026_12_03_0900",
                "pat_2",
                Status::Confirmed,
                "Skin check",
            ),
        ];
        for (id, slot_id, patient_id, status, reason) in booked {
            // Seed data is ours: every slot above exists.
            if let Some(slot) = db.slots.get_mut(slot_id) {
                slot.booked_by = Some(id.into());
                let appointment = Appointment {
                    id: id.into(),
                    slot_id: Some(slot_id.into()),
                    date: slot.start.clone(),
                    status,
                    patient_id: patient_id.into(),
                    provider_id: slot.provider_id.clone(),
                    payment: Payment::Unpaid,
                    payment_intent: None,
                    reason: reason.into(),
                };
                db.appointments.insert(id.into(), appointment);
            }
        }
        db
    }
}

/// The provider with this id, in the shapes' `{id, name}` form.
fn provider(providers: &HashMap<String, Provider>, id: &str) -> Provider {
    providers.get(id).cloned().unwrap_or_else(|| Provider {
        id: id.into(),
        name: "(unknown provider)".into(),
    })
}

impl Appointment {
    pub fn v1(&self, providers: &HashMap<String, Provider>) -> AppointmentV1 {
        AppointmentV1 {
            id: self.id.clone(),
            date: self.date.clone(),
            provider_name: provider(providers, &self.provider_id).name,
        }
    }

    pub fn v2(&self, providers: &HashMap<String, Provider>) -> AppointmentV2 {
        AppointmentV2 {
            id: self.id.clone(),
            date: self.date.clone(),
            status: self.status,
            patient_id: self.patient_id.clone(),
            provider: provider(providers, &self.provider_id),
            payment: PaymentV2 {
                status: self.payment,
                payment_intent: self.payment_intent.clone(),
            },
        }
    }
}

#[derive(Clone)]
pub struct AppState {
    db: Arc<Mutex<Db>>,
    pub booking_latency: Duration,
    /// The deprecation report of `GET /admin/deprecations`, read from the versioning layer.
    pub deprecations: DeprecationReport,
}

/// Builds the deprecation report: who called each deprecated version in the last 30 days.
pub type DeprecationReport = Arc<
    dyn Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = serde_json::Value> + Send>>
        + Send
        + Sync,
>;

impl AppState {
    pub fn new(booking_latency: Duration, deprecations: DeprecationReport) -> Self {
        Self {
            db: Arc::new(Mutex::new(Db::seed())),
            booking_latency,
            deprecations,
        }
    }

    /// The data; a handler that panicked mid-update cannot leave it half-written (every update
    /// is a few field assignments), so a poisoned lock is taken over.
    pub fn db(&self) -> MutexGuard<'_, Db> {
        self.db.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
