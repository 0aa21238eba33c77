//! Admin endpoints (scope `admin`): status, checkpoint, verify, blob garbage collection.
//! Backups are in `backups.rs`.

use axum::extract::State;
use axum::{Extension, Json};

use super::{require_admin, AdminErrors};
use crate::api::{
    BlobGcResponse, CheckpointResponse, CollectionSummary, ProblemBody, StatusResponse,
    VerifyResponse,
};
use crate::auth::Principal;
use crate::blocking::blocking;
use crate::error::ApiResult;
use crate::state::Shared;

/// LSNs, counters, sizes on disk, last checkpoint, poisoned or not, and what recovery did
/// when the database was opened (`recovery`).
#[utoipa::path(
    get,
    path = "/v1/admin/status",
    tag = "admin",
    responses((status = 200, description = "Status", body = StatusResponse), AdminErrors),
    security(("bearer" = []))
)]
pub async fn status(
    State(state): State<Shared>,
    Extension(who): Extension<Principal>,
) -> ApiResult<Json<StatusResponse>> {
    require_admin(&who)?;
    let db = state.db.clone();
    let s = blocking(move || db.stats()).await?;
    Ok(Json(StatusResponse {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        uptime_s: state.started.elapsed().as_secs(),
        data: state.db.path().display().to_string(),
        lsn: s.lsn,
        durable_lsn: s.durable_lsn,
        commits: s.commits,
        fsyncs: s.fsyncs,
        commits_per_fsync: s.commits_per_fsync,
        log_segments: s.log_segments,
        log_bytes: s.log_bytes,
        checkpoints: s.checkpoints,
        checkpoint_bytes: s.checkpoint_bytes,
        last_checkpoint_lsn: s.last_checkpoint_lsn,
        last_backup: state
            .config
            .backup_repo
            .as_ref()
            .map(|_| serde_json::to_value(&s.backup).unwrap_or_default()),
        poisoned: s.poisoned,
        shutting_down: state.is_shutting_down(),
        collections: s
            .collections
            .into_iter()
            .map(|c| CollectionSummary {
                name: c.name,
                documents: c.documents,
            })
            .collect(),
        recovery: state.recovery.clone(),
        history: crate::api::HistoryWindowBody {
            retained_from_lsn: s.history.retained_from_lsn,
            retained_from_time: s.history.retained_from_time.map(amberdb::format_micros),
            retained_bytes: s.history.retained_bytes,
        },
        ttl_expired_pending: s.ttl_expired_pending,
        ttl_reaped: s.ttl_reaped,
        key_ids_in_use: s.key_ids_in_use,
        key_rotation: s.key_rotation.map(Into::into),
    }))
}

/// Write a checkpoint now (if anything changed) and remove log segments no checkpoint needs.
#[utoipa::path(
    post,
    path = "/v1/admin/checkpoint",
    tag = "admin",
    responses((status = 200, description = "The checkpoint", body = CheckpointResponse), AdminErrors),
    security(("bearer" = []))
)]
pub async fn checkpoint(
    State(state): State<Shared>,
    Extension(who): Extension<Principal>,
) -> ApiResult<Json<CheckpointResponse>> {
    require_admin(&who)?;
    let db = state.db.clone();
    let c = blocking(move || db.checkpoint()).await??;
    Ok(Json(CheckpointResponse {
        path: c.path.display().to_string(),
        lsn: c.lsn,
        bytes: c.bytes,
        written: c.written,
        segments_removed: c.segments_removed,
    }))
}

/// Remove blob files nothing needs any more now (the collector also runs every
/// `blobs.gc_interval_s`): kept are those a live blob, a blob write still in the data
/// directory's log or a staged upload younger than an hour names.
#[utoipa::path(
    post,
    path = "/v1/admin/blobs/gc",
    tag = "admin",
    responses((status = 200, description = "What the collection did", body = BlobGcResponse), AdminErrors),
    security(("bearer" = []))
)]
pub async fn blob_gc(
    State(state): State<Shared>,
    Extension(who): Extension<Principal>,
) -> ApiResult<Json<BlobGcResponse>> {
    require_admin(&who)?;
    let db = state.db.clone();
    let r = blocking(move || db.gc_blobs()).await??;
    Ok(Json(BlobGcResponse {
        files: r.files,
        kept: r.kept,
        removed: r.removed,
        removed_bytes: r.removed_bytes,
        staging_expired: r.staging_expired,
    }))
}

/// Check every checksum of the data directory and every document in memory. Problems are
/// reported in the body (`clean: false`), not as an HTTP error.
#[utoipa::path(
    post,
    path = "/v1/admin/verify",
    tag = "admin",
    responses((status = 200, description = "The verify report", body = VerifyResponse), AdminErrors),
    security(("bearer" = []))
)]
pub async fn verify(
    State(state): State<Shared>,
    Extension(who): Extension<Principal>,
) -> ApiResult<Json<VerifyResponse>> {
    require_admin(&who)?;
    let db = state.db.clone();
    let r = blocking(move || db.verify()).await??;
    Ok(Json(VerifyResponse {
        clean: r.is_clean(),
        segments: r.segments,
        seals: r.seals,
        commits: r.commits,
        checkpoints: r.checkpoints,
        documents_checked: r.documents_checked,
        blobs_checked: r.blobs_checked,
        stream_entries_checked: r.stream_entries_checked,
        torn_tail: r
            .torn_tail
            .map(|t| format!("{}:{}", t.file.display(), t.offset)),
        problems: r
            .problems
            .into_iter()
            .map(|p| ProblemBody {
                file: p.file.display().to_string(),
                offset: p.offset,
                detail: p.detail,
            })
            .collect(),
    }))
}
