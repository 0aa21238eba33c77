//! Batch migrations: `POST /v1/collections/{c}/migrate` (a dry run, or every document moved
//! to one schema version and the spec set to it in one logged commit, reason `migration`)
//! and `GET /v1/collections/{c}/migrations` (the migrations applied). The engine does the
//! work (`amberdb::schema::migrate`); see docs/SCHEMAS.md.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::documents::CollectionPath;
use super::{body, error_responses, parse_json, path, require_read, require_write};
use super::{E401, E403, E503};
use crate::auth::Principal;
use crate::blocking::blocking;
use crate::error::{ApiError, ApiResult};
use crate::headers;
use crate::state::Shared;

/// The body of `POST .../migrate`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MigrateRequest {
    /// The schema version to move every document to (a version of the collection's spec).
    #[schema(minimum = 1)]
    pub to: u32,
    /// Only check and report; write nothing (default false).
    #[serde(default)]
    pub dry_run: bool,
}

/// Errors of a batch migration.
pub struct MigrateErrors;
impl utoipa::IntoResponses for MigrateErrors {
    fn responses(
    ) -> std::collections::BTreeMap<String, utoipa::openapi::RefOr<utoipa::openapi::Response>> {
        error_responses(&[
            (400, "Malformed request, or a target version the spec does not define, or a collection without schema versions (codes invalid_*)."),
            E401,
            E403,
            (406, "A migration on the way down has no down step (code no_down_migration)."),
            (409, "The spec changed while the migration ran (code conflict): nothing was written."),
            (413, "The rewrite does not fit one commit (code payload_too_large)."),
            (415, "Content-Type is not application/json (code unsupported_media_type)."),
            (422, "Documents failed to migrate or to validate at the target version (code migration_failed): nothing was written; details.report is the full report with every failure."),
            E503,
        ])
    }
}

/// Moves every document of a collection to one schema version (write scope on the
/// collection). With `dry_run`, reports what would happen: documents per stored version, how
/// many change, failures (at most 20 samples), bytes before and after, and the `down(up(doc))`
/// round trip where every migration on the way has a `down`. Without it, writes every
/// rewritten document, the spec's new current version and a migration record in **one**
/// commit (reason `migration`), or nothing when any document fails (422 with the report).
#[utoipa::path(
    post,
    path = "/v1/collections/{collection}/migrate",
    tag = "collections",
    params(CollectionPath),
    request_body(content = MigrateRequest, content_type = "application/json"),
    responses((status = 200, description = "The migration report (written when lsn is set)", body = Object), MigrateErrors),
    security(("bearer" = []))
)]
pub async fn migrate(
    State(state): State<Shared>,
    Extension(who): Extension<Principal>,
    p: Result<Path<CollectionPath>, PathRejection>,
    h: HeaderMap,
    b: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<amberdb::schema::MigrationReport>> {
    let CollectionPath { collection } = path(p)?;
    amberdb::validate_collection(&collection)?;
    require_write(&who, &collection)?;
    headers::require_json(&h)?;
    let req: MigrateRequest = parse_json(&body(b)?, "invalid_migrate")?;
    if req.to == 0 {
        return Err(ApiError::bad_request(
            "invalid_migrate",
            "to must be a positive schema version",
        ));
    }
    let db = state.db.clone();
    let opts = amberdb::schema::MigrateOptions {
        to: req.to,
        dry_run: req.dry_run,
    };
    let report = blocking(move || db.migrate(&collection, opts)).await??;
    if !report.dry_run && report.lsn.is_none() {
        let msg = format!(
            "{} of {} documents of {} failed to migrate to schema version {}; nothing was written",
            report.failure_count, report.documents, report.collection, report.to
        );
        return Err(
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "migration_failed", msg)
                .details(serde_json::json!({ "report": report })),
        );
    }
    Ok(Json(report))
}

/// The answer of `GET .../migrations`.
#[derive(Debug, Serialize, ToSchema)]
pub struct MigrationsResponse {
    /// Applied batch migrations, oldest first: from, to, lsn, committed_at (microseconds),
    /// documents, rewritten, checksums of the migrations on the path.
    #[schema(value_type = Vec<Object>)]
    pub migrations: Vec<amberdb::schema::AppliedMigration>,
}

/// The batch migrations applied to a collection (read scope), oldest first. A rollback is a
/// migration to the older version (through `down`) or a revert of the collection to the LSN
/// before the migration (docs/OPERATIONS.md, "A migration went wrong").
#[utoipa::path(
    get,
    path = "/v1/collections/{collection}/migrations",
    tag = "collections",
    params(CollectionPath),
    responses((status = 200, description = "The applied migrations", body = MigrationsResponse), super::ReadErrors),
    security(("bearer" = []))
)]
pub async fn migrations(
    State(state): State<Shared>,
    Extension(who): Extension<Principal>,
    p: Result<Path<CollectionPath>, PathRejection>,
) -> ApiResult<Json<MigrationsResponse>> {
    let CollectionPath { collection } = path(p)?;
    amberdb::validate_collection(&collection)?;
    require_read(&who, &collection)?;
    let db = state.db.clone();
    let migrations = blocking(move || db.migrations(&collection)).await??;
    Ok(Json(MigrationsResponse { migrations }))
}
