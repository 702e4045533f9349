//! `GET /admin/deprecations`: who still calls deprecated versions, read from the versioning
//! layer's store.

use std::sync::Arc;

use api_policy::versioning::{VersionPinStore, VersioningLayer};
use axum::Json;
use axum::extract::State;

use crate::data::{AppState, DeprecationReport};

/// Who still calls deprecated versions: the contact list before the sunset (admins only).
pub async fn deprecations(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json((state.deprecations)().await)
}

/// The report of `GET /admin/deprecations`, over the layer's store.
pub fn deprecation_report<V: VersionPinStore>(
    layer: Option<VersioningLayer<V>>,
) -> DeprecationReport {
    Arc::new(move || {
        let layer = layer.clone();
        Box::pin(async move {
            let mut versions = Vec::new();
            let Some(layer) = layer else {
                return serde_json::json!({ "deprecated": versions });
            };
            for version in layer.deprecated_versions() {
                let callers = match layer.usage(version, 30).await {
                    Ok(usage) => serde_json::to_value(usage).unwrap_or_default(),
                    Err(error) => serde_json::json!({ "error": error.to_string() }),
                };
                let deprecation = layer.deprecation(version);
                versions.push(serde_json::json!({
                    "version": version.to_string(),
                    "deprecated_since": deprecation.map(|d| httpdate::fmt_http_date(d.deprecated_at())),
                    "sunset": deprecation.and_then(|d| d.sunset_at()).map(httpdate::fmt_http_date),
                    "migration_guide": deprecation.and_then(|d| d.migration_guide()),
                    "days": 30,
                    "callers": callers,
                }));
            }
            serde_json::json!({ "deprecated": versions })
        })
    })
}
