//! Probes and documents about the server: `/healthz`, `/readyz`, `/metrics`, `/openapi.json`.

use std::sync::OnceLock;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};

use super::require_admin;
use crate::api::HealthResponse;
use crate::auth::Principal;
use crate::blocking::blocking;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::state::Shared;

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "probes", responses((status = 200, description = "Up", body = HealthResponse)))]
pub async fn healthz() -> Json<HealthResponse> {
    Json(HealthResponse {
        status: "ok".into(),
    })
}

/// The database is open, not poisoned, and the server is not shutting down.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "probes",
    responses(
        (status = 200, description = "Ready", body = HealthResponse),
        (status = 503, description = "Poisoned or shutting down", body = ErrorBody),
    )
)]
pub async fn readyz(State(state): State<Shared>) -> ApiResult<Json<HealthResponse>> {
    if state.is_shutting_down() {
        return Err(ApiError::shutting_down());
    }
    if let Some(cause) = state.db.poisoned() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "poisoned",
            format!("database is poisoned: {cause}"),
        ));
    }
    Ok(Json(HealthResponse {
        status: "ok".into(),
    }))
}

/// Prometheus metrics (text format 0.0.4). Needs the admin scope when tokens are configured.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "probes",
    responses(
        (status = 200, description = "Metrics", content_type = "text/plain", body = String),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Not admin", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn metrics(
    State(state): State<Shared>,
    Extension(who): Extension<Principal>,
) -> ApiResult<Response> {
    require_admin(&who)?;
    let db = state.db.clone();
    let stats = blocking(move || db.stats()).await?;
    let text = state.metrics.render(&stats, state.started.elapsed());
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

/// This API's OpenAPI 3 document, generated from the code.
#[utoipa::path(get, path = "/openapi.json", tag = "probes", responses((status = 200, description = "OpenAPI document", body = Object)))]
pub async fn openapi() -> Response {
    static DOC: OnceLock<String> = OnceLock::new();
    let doc = DOC.get_or_init(crate::openapi::json);
    ([(header::CONTENT_TYPE, "application/json")], doc.as_str()).into_response()
}
