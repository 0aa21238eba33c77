//! Backup admin endpoints (scope `admin`): list, create and verify backups in the repository
//! configured as `backup.repo`. The engine does the work (`amberdb::backup`); these handlers
//! only run it off the async workers and shape the answers.

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use utoipa::openapi::{RefOr, Response};
use utoipa::{IntoParams, ToSchema};

use super::{error_responses, require_admin, E401, E403, E503};
use crate::api::{backup_json, backup_manifest_json, BackupBody};
use crate::auth::Principal;
use crate::blocking::blocking;
use crate::error::{ApiError, ApiResult};
use crate::state::Shared;

const E404_BACKUP: (u16, &str) = (
    404,
    "No backup repository is configured (code backup_repo_not_configured) or no such backup (code backup_not_found).",
);
const E500_BACKUP: (u16, &str) = (
    500,
    "The backup failed (code backup_failed); the message says why.",
);

/// Errors of the backup endpoints.
pub struct BackupErrors;
impl utoipa::IntoResponses for BackupErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        error_responses(&[E401, E403, E404_BACKUP, E500_BACKUP, E503])
    }
}

/// `GET /v1/admin/backups`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BackupListResponse {
    /// The repository.
    pub repository: String,
    /// Every backup directory, oldest first: a complete backup with its manifest (files and
    /// their SHA-256s included), a damaged or incomplete one with what is wrong.
    #[schema(value_type = Vec<BackupBody>)]
    pub backups: Vec<serde_json::Value>,
    /// LSN range of the archived log, when there is one.
    pub archived_lsn_range: Option<(u64, u64)>,
    /// The last backup this server took (scheduled or requested) and any backup error.
    #[schema(value_type = Object)]
    pub status: serde_json::Value,
}

/// `POST /v1/admin/backups/{id}/verify` query.
#[derive(Debug, Clone, Deserialize, IntoParams)]
pub struct VerifyQuery {
    /// Also decode the snapshot and every archived segment and check every document's SHA-256.
    #[serde(default)]
    pub read_data: bool,
}

/// A repository verification.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BackupVerifyResponse {
    /// True when no problem was found.
    pub clean: bool,
    /// Backups checked.
    pub backups: u64,
    /// Archived segments checked.
    pub segments: u64,
    /// Documents whose SHA-256 was checked (with read_data).
    pub documents_checked: u64,
    /// Gaps in the archived log, as [first, last] missing LSNs.
    // Described as arrays of two integers: a tuple nested in an array becomes a
    // `prefixItems` schema that schemathesis's 3.1 handling turns into an invalid one.
    #[schema(value_type = Vec<Vec<u64>>)]
    pub gaps: Vec<(u64, u64)>,
    /// Every problem, as "file: detail".
    pub problems: Vec<String>,
}

fn repo(state: &Shared) -> Result<amberdb::BackupRepo, ApiError> {
    let Some(path) = state.config.backup_repo.clone() else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "backup_repo_not_configured",
            "no backup repository is configured; set backup.repo (see docs/CONFIG.md)",
        ));
    };
    amberdb::BackupRepo::open_or_init(&path).map_err(backup_failed)
}

fn backup_failed(e: amberdb::Error) -> ApiError {
    match e {
        amberdb::Error::Poisoned { .. } | amberdb::Error::Closed => e.into(),
        other => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "backup_failed",
            other.to_string(),
        ),
    }
}

/// Backups in the configured repository, and the archived log range.
#[utoipa::path(
    get,
    path = "/v1/admin/backups",
    tag = "admin",
    responses((status = 200, description = "The backups", body = BackupListResponse), BackupErrors),
    security(("bearer" = []))
)]
pub async fn list(
    State(state): State<Shared>,
    Extension(who): Extension<Principal>,
) -> ApiResult<Json<BackupListResponse>> {
    require_admin(&who)?;
    let db = state.db.clone();
    let st = state.clone();
    blocking(move || {
        let repo = repo(&st)?;
        let backups = repo.entries().map_err(backup_failed)?;
        let archive = repo.archived_segments().map_err(backup_failed)?;
        Ok(Json(BackupListResponse {
            repository: repo.location(),
            backups: backups.iter().map(backup_json).collect(),
            archived_lsn_range: archive
                .first()
                .zip(archive.last())
                .map(|(f, l)| (f.first_lsn, l.last_lsn)),
            status: serde_json::to_value(db.backup_status()).unwrap_or_default(),
        }))
    })
    .await?
}

/// Take an online backup now (writers keep going), then return its manifest summary.
#[utoipa::path(
    post,
    path = "/v1/admin/backups",
    tag = "admin",
    responses((status = 201, description = "The new backup", body = BackupBody), BackupErrors),
    security(("bearer" = []))
)]
pub async fn create(
    State(state): State<Shared>,
    Extension(who): Extension<Principal>,
) -> ApiResult<(StatusCode, Json<serde_json::Value>)> {
    require_admin(&who)?;
    let st = state.clone();
    blocking(move || {
        let repo = repo(&st)?;
        let m = st.db.backup(&repo).map_err(backup_failed)?;
        Ok((StatusCode::CREATED, Json(backup_manifest_json(&m))))
    })
    .await?
}

/// Verify one backup (and the whole archived log): sizes, hashes, continuity; with
/// `read_data`, a full decode with every document's SHA-256.
#[utoipa::path(
    post,
    path = "/v1/admin/backups/{id}/verify",
    tag = "admin",
    params(("id" = String, Path, description = "Backup id"), VerifyQuery),
    responses((status = 200, description = "The report (clean or not)", body = BackupVerifyResponse), BackupErrors),
    security(("bearer" = []))
)]
pub async fn verify(
    State(state): State<Shared>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
    Query(q): Query<VerifyQuery>,
) -> ApiResult<Json<BackupVerifyResponse>> {
    require_admin(&who)?;
    let st = state.clone();
    blocking(move || {
        let repo = repo(&st)?;
        if !repo.backup_ids().map_err(backup_failed)?.contains(&id) {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "backup_not_found",
                format!("no backup {id:?} in {}", repo.location()),
            )
            .details(serde_json::json!({ "id": id })));
        }
        // With the server's keys (encryption.key_file), so --read-data checks contents.
        let keys = st.config.encryption.as_ref();
        let r = repo
            .verify_with(Some(&id), q.read_data, &amberdb::backup::NoProgress, keys)
            .map_err(backup_failed)?;
        Ok(Json(BackupVerifyResponse {
            clean: r.is_clean(),
            backups: r.backups,
            segments: r.segments,
            documents_checked: r.documents_checked,
            gaps: r.gaps.clone(),
            problems: r
                .problems
                .iter()
                .map(|p| format!("{}: {}", p.file.display(), p.detail))
                .collect(),
        }))
    })
    .await?
}
