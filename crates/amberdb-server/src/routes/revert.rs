//! Revert, undo and live restore (`POST /v1/revert`, `POST /v1/undo`,
//! `POST /v1/admin/restore`), and documents under server-generated keys
//! (`POST /v1/collections/{c}/docs`).
//!
//! The engine does the work (`amberdb::revert`): each request is one logged transaction whose
//! commit says `revert`, `undo` or `restore` and the LSN it refers to. These handlers parse the
//! target, check scopes (write on the affected collections; admin for the whole database),
//! and shape the report. A restore to a point outside the history window (or a backup of
//! another timeline) is restored from the backup repository into a new directory and swapped
//! in for the served database (`swap::restore_from_repo`).

use std::collections::{BTreeMap, BTreeSet};

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use utoipa::openapi::{RefOr, Response as OaResponse};
use utoipa::ToSchema;

use super::documents::CollectionPath;
use super::write::{self, Method};
use super::{
    body, error_responses, parse_json, path, require_admin, require_write, E401, E403, E503,
};
use crate::auth::Principal;
use crate::blocking::blocking;
use crate::error::{ApiError, ApiResult};
use crate::state::Shared;

/// `POST /v1/revert`: which documents, to which point.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevertRequest {
    /// The collection; absent reverts the whole database (admin scope).
    pub collection: Option<String>,
    /// Only this document.
    pub key: Option<String>,
    /// Only the documents whose keys start with this.
    pub prefix: Option<String>,
    /// Target time, RFC 3339: the state after the last commit at or before it.
    pub to_time: Option<String>,
    /// Target LSN: the state right after this commit.
    pub to_lsn: Option<u64>,
    /// Only report what would change.
    #[serde(default)]
    pub dry_run: bool,
}

/// `POST /v1/undo`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UndoRequest {
    /// The commit to undo.
    pub lsn: u64,
    /// Only report what would change.
    #[serde(default)]
    pub dry_run: bool,
    /// Undo even documents written again since (their later changes leave the current
    /// state; they stay in the history).
    #[serde(default)]
    pub force: bool,
}

/// `POST /v1/admin/restore`: exactly one of the fields.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RestoreRequest {
    /// A backup of the configured repository: the live database becomes its state.
    pub backup_id: Option<String>,
    /// Target time, RFC 3339.
    pub to_time: Option<String>,
    /// Target LSN.
    pub to_lsn: Option<u64>,
    /// Only report what would change.
    #[serde(default)]
    pub dry_run: bool,
}

/// One document a revert, undo or restore changed (or would change).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ChangedDoc {
    /// Collection.
    pub collection: String,
    /// Key.
    pub key: String,
    /// Version before (0 = did not exist).
    pub version_before: u64,
    /// Version after (0 = deleted); in a dry run, the version it would get.
    pub version_after: u64,
    /// `restored`, `deleted` or `recreated`.
    pub action: String,
}

/// What a revert, undo or restore did.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RevertResponse {
    /// `revert`, `undo` or `restore`: the reason its commit records.
    pub reason: String,
    /// The LSN the documents were put back to (for an undo: the undone commit).
    pub target_lsn: u64,
    /// The commit that did it; null for a dry run or when nothing had to change.
    pub commit_lsn: Option<u64>,
    /// Whether this was a dry run.
    pub dry_run: bool,
    /// The backup restored from, for a restore by `backup_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_id: Option<String>,
    /// Every document changed, in (collection, key) order (empty for a restore from the
    /// backup repository, which replaces the whole database).
    pub changed: Vec<ChangedDoc>,
    /// How a restore was done: `live` (one logged transaction inside the history window) or
    /// `swap` (restored from the backup repository into a new directory and swapped in).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// For a `swap` restore: the restore report (a dry run: the restore plan).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub restore: Option<serde_json::Value>,
    /// For a `swap` restore: where the replaced database directory is kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaced_kept_at: Option<String>,
}

impl RevertResponse {
    fn new(reason: &str, r: amberdb::RevertReport) -> Self {
        RevertResponse {
            reason: reason.into(),
            target_lsn: r.target_lsn,
            commit_lsn: r.commit_lsn,
            dry_run: r.dry_run,
            backup_id: None,
            mode: None,
            restore: None,
            replaced_kept_at: None,
            changed: r
                .changed
                .into_iter()
                .map(|c| ChangedDoc {
                    collection: c.collection,
                    key: c.key,
                    version_before: c.version_before,
                    version_after: c.version_after,
                    action: match c.action {
                        amberdb::Action::Restored => "restored",
                        amberdb::Action::Deleted => "deleted",
                        amberdb::Action::Recreated => "recreated",
                    }
                    .into(),
                })
                .collect(),
        }
    }
}

const E400: (u16, &str) = (
    400,
    "Malformed request: bad JSON, collection, key, time, or not exactly one target (codes invalid_*).",
);
const E409: (u16, &str) = (
    409,
    "A document was written concurrently (revert) or since the undone commit (undo): details.conflicts names each with the version expected and found (code conflict); or another restore is running (code restore_in_progress).",
);
const E410: (u16, &str) = (
    410,
    "The target is older than the retained history: details.retained_from_lsn (code history_lost).",
);
const E413: (u16, &str) = (
    413,
    "The revert would write more than the limit of documents or bytes in one transaction (codes transaction_too_large, payload_too_large).",
);
const E415: (u16, &str) = (
    415,
    "Unsupported Content-Type (code unsupported_media_type).",
);

/// Errors of revert, undo and restore.
pub struct RevertErrors;

impl utoipa::IntoResponses for RevertErrors {
    fn responses() -> BTreeMap<String, RefOr<OaResponse>> {
        error_responses(&[E400, E401, E403, E409, E410, E413, E415, E503])
    }
}

/// Errors of a create under a generated key.
pub struct CreateErrors;

impl utoipa::IntoResponses for CreateErrors {
    fn responses() -> BTreeMap<String, RefOr<OaResponse>> {
        error_responses(&[
            E400,
            E401,
            E403,
            (
                413,
                "Body or document too large (codes payload_too_large, document_too_large).",
            ),
            E415,
            E503,
        ])
    }
}

/// Parses an RFC 3339 time into microseconds since the Unix epoch.
fn parse_time(field: &str, s: &str) -> Result<u64, ApiError> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|e| {
            ApiError::bad_request(
                "invalid_time",
                format!("{field} {s:?} is not an RFC 3339 time (like 2026-11-21T02:40:00Z): {e}"),
            )
        })?;
    u64::try_from(t.unix_timestamp_nanos() / 1000)
        .map_err(|_| ApiError::bad_request("invalid_time", format!("{field} {s:?} is before 1970")))
}

/// Exactly one of `to_time` and `to_lsn`.
fn target(to_time: Option<&str>, to_lsn: Option<u64>) -> Result<amberdb::revert::At, ApiError> {
    match (to_time, to_lsn) {
        (Some(t), None) => Ok(amberdb::revert::At::Time(parse_time("to_time", t)?)),
        (None, Some(n)) => Ok(amberdb::revert::At::Lsn(n)),
        _ => Err(ApiError::bad_request(
            "invalid_target",
            "give exactly one of to_time (RFC 3339) and to_lsn",
        )),
    }
}

fn request<T: serde::de::DeserializeOwned>(
    headers: &HeaderMap,
    b: Result<Bytes, BytesRejection>,
) -> Result<T, ApiError> {
    crate::headers::require_json(headers)?;
    let bytes = body(b)?;
    parse_json(&bytes, "invalid_request")
}

/// Put documents back to their state at a time or LSN: one document (`key`), a key prefix,
/// a collection, or (without `collection`, admin scope) the whole database, as one logged
/// transaction with reason `revert`. Every document that differs from its state then is
/// written back (deleted if it did not exist then); the answer lists each with its versions.
#[utoipa::path(
    post,
    path = "/v1/revert",
    tag = "revert",
    request_body(content = RevertRequest, content_type = "application/json"),
    responses((status = 200, description = "The revert report (empty list: nothing differed)", body = RevertResponse), RevertErrors),
    security(("bearer" = []))
)]
pub async fn revert(
    State(state): State<Shared>,
    Extension(who): Extension<Principal>,
    headers: HeaderMap,
    b: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<RevertResponse>> {
    let req: RevertRequest = request(&headers, b)?;
    let at = target(req.to_time.as_deref(), req.to_lsn)?;
    let scope = match (req.collection, req.key, req.prefix) {
        (Some(collection), Some(key), None) => amberdb::Scope::Key { collection, key },
        (Some(collection), None, Some(prefix)) => amberdb::Scope::Prefix { collection, prefix },
        (Some(collection), None, None) => amberdb::Scope::Collection { collection },
        (None, None, None) => amberdb::Scope::All,
        (None, _, _) => {
            return Err(ApiError::bad_request(
                "invalid_scope",
                "key and prefix need a collection",
            ))
        }
        (Some(_), Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "invalid_scope",
                "give key or prefix, not both",
            ))
        }
    };
    match scope.collection() {
        Some(c) => {
            amberdb::validate_collection(c)?;
            require_write(&who, c)?;
        }
        None => require_admin(&who)?,
    }
    refuse_while_shutting_down(&state)?;
    let db = state.db.clone();
    let opts = amberdb::RevertOptions {
        dry_run: req.dry_run,
    };
    let report = blocking(move || db.revert(&scope, at, opts))
        .await
        .unwrap_or(Err(amberdb::Error::Closed))?;
    Ok(Json(RevertResponse::new("revert", report)))
}

/// Undo one commit: every document it touched goes back to its state just before it, in one
/// new transaction with reason `undo`. Refused with 409 naming each document written since
/// (expected: the version the commit left; actual: the current one) unless `force`.
#[utoipa::path(
    post,
    path = "/v1/undo",
    tag = "revert",
    request_body(content = UndoRequest, content_type = "application/json"),
    responses((status = 200, description = "The undo report", body = RevertResponse), RevertErrors),
    security(("bearer" = []))
)]
pub async fn undo(
    State(state): State<Shared>,
    Extension(who): Extension<Principal>,
    headers: HeaderMap,
    b: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<RevertResponse>> {
    let req: UndoRequest = request(&headers, b)?;
    refuse_while_shutting_down(&state)?;
    let db = state.db.clone();
    let lsn = req.lsn;
    let docs = blocking(move || db.commit_documents(lsn))
        .await
        .unwrap_or(Err(amberdb::Error::Closed))?;
    let collections: BTreeSet<&str> = docs.iter().map(|(c, _)| c.as_str()).collect();
    for c in collections {
        require_write(&who, c)?;
    }
    let db = state.db.clone();
    let opts = amberdb::UndoOptions {
        dry_run: req.dry_run,
        force: req.force,
    };
    let report = blocking(move || db.undo(lsn, opts))
        .await
        .unwrap_or(Err(amberdb::Error::Closed))?;
    Ok(Json(RevertResponse::new("undo", report)))
}

/// Make the live database equal to an earlier state (admin scope): a time or LSN inside the
/// history window, or a backup of the configured repository whose LSN is inside it, as one
/// logged transaction with reason `restore` (`mode: live`). A target outside the window (or a
/// backup of another timeline) is restored from the repository into a new directory and
/// swapped in (`mode: swap`): writes answer 503 `restoring` meanwhile.
#[utoipa::path(
    post,
    path = "/v1/admin/restore",
    tag = "admin",
    request_body(content = RestoreRequest, content_type = "application/json"),
    responses((status = 200, description = "The restore report", body = RevertResponse), RevertErrors),
    security(("bearer" = []))
)]
pub async fn restore(
    State(state): State<Shared>,
    Extension(who): Extension<Principal>,
    headers: HeaderMap,
    b: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<RevertResponse>> {
    require_admin(&who)?;
    let req: RestoreRequest = request(&headers, b)?;
    refuse_while_shutting_down(&state)?;
    let opts = amberdb::RevertOptions {
        dry_run: req.dry_run,
    };
    let (at, backup_id) = match (req.backup_id, req.to_time.as_deref(), req.to_lsn) {
        (Some(id), None, None) => match backup_lsn(&state, &id).await? {
            Some(at) => (at, Some(id)),
            None => {
                let target = amberdb::RestoreTarget::Backup(id.clone());
                let mut resp = swap_restore(&state, target, req.dry_run).await?;
                resp.backup_id = Some(id);
                return Ok(Json(resp));
            }
        },
        (None, t, n) => (target(t, n)?, None),
        _ => {
            return Err(ApiError::bad_request(
                "invalid_target",
                "give exactly one of backup_id, to_time (RFC 3339) and to_lsn",
            ))
        }
    };
    let db = state.db.clone();
    let report = match blocking(move || db.restore_live(at, opts))
        .await
        .unwrap_or(Err(amberdb::Error::Closed))
    {
        Ok(r) => r,
        Err(amberdb::Error::HistoryLost { .. }) => {
            let target = match (&backup_id, at) {
                (Some(id), _) => amberdb::RestoreTarget::Backup(id.clone()),
                (None, amberdb::revert::At::Lsn(n)) => amberdb::RestoreTarget::Lsn(n),
                (None, amberdb::revert::At::Time(t)) => amberdb::RestoreTarget::Time(t),
            };
            let mut resp = swap_restore(&state, target, opts.dry_run).await?;
            resp.backup_id = backup_id;
            return Ok(Json(resp));
        }
        Err(e) => return Err(e.into()),
    };
    let mut resp = RevertResponse::new("restore", report);
    resp.backup_id = backup_id;
    resp.mode = Some("live".into());
    Ok(Json(resp))
}

/// A restore outside the history window: from the backup repository into a new directory,
/// swapped in (`swap::restore_from_repo`).
async fn swap_restore(
    state: &Shared,
    target: amberdb::RestoreTarget,
    dry_run: bool,
) -> Result<RevertResponse, ApiError> {
    let done = crate::swap::restore_from_repo(state, target, dry_run).await?;
    Ok(RevertResponse {
        reason: "restore".into(),
        target_lsn: done.lsn,
        commit_lsn: None,
        dry_run,
        backup_id: None,
        changed: vec![],
        mode: Some("swap".into()),
        restore: Some(done.report),
        replaced_kept_at: done.kept.map(|p| p.display().to_string()),
    })
}

/// The LSN a backup of the configured repository holds, if the live database can reach it
/// by a restore-reason transaction: same database, same timeline at that LSN, not newer
/// than the live state. `None`: it cannot (restore it from the repository and swap it in).
async fn backup_lsn(state: &Shared, id: &str) -> Result<Option<amberdb::revert::At>, ApiError> {
    let Some(repo_path) = state.config.backup_repo.clone() else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "backup_repo_not_configured",
            "no backup repository is configured; set backup.repo (see docs/CONFIG.md)",
        ));
    };
    let (db, id2) = (state.db.clone(), id.to_owned());
    let manifest = blocking(move || {
        let repo = amberdb::BackupRepo::open(&repo_path)?;
        if !repo.backup_ids()?.contains(&id2) {
            return Ok(None);
        }
        repo.manifest(&id2).map(Some)
    })
    .await
    .unwrap_or(Err(amberdb::Error::Closed))
    .map_err(|e| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "backup_failed",
            e.to_string(),
        )
    })?;
    let Some(m) = manifest else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "backup_not_found",
            format!("no backup {id:?} in the repository"),
        ));
    };
    let identity = db.identity();
    let same_history = m.database_id == Some(identity.database_id)
        && m.timeline.is_some()
        && identity.timeline_at(m.lsn) == m.timeline
        && m.lsn <= db.view().lsn();
    if !same_history {
        return Ok(None);
    }
    Ok(Some(amberdb::revert::At::Lsn(m.lsn)))
}

fn refuse_while_shutting_down(state: &Shared) -> Result<(), ApiError> {
    if state.is_shutting_down() {
        return Err(ApiError::shutting_down());
    }
    Ok(())
}

/// Create a document under a server-generated, time-ordered key (a UUIDv7: keys sort in
/// creation order). The body is the value, as for PUT; the answer is 201 with `Location`.
#[utoipa::path(
    post,
    path = "/v1/collections/{collection}/docs",
    tag = "documents",
    params(CollectionPath,
        ("Amber-Durability" = Option<String>, Header, description = "sync or buffered"),
        ("Amber-Schema-Version" = Option<u32>, Header, description = "Schema version of the value (default 1)")),
    request_body(content = serde_json::Value, content_type = "application/json", description = "The value"),
    responses(
        (status = 201, description = "Created under a generated key", body = crate::api::WriteResult,
            headers(("Location" = String, description = "/v1/collections/{collection}/docs/{key}"), ("ETag" = String), ("Amber-Version" = u64), ("Amber-Lsn" = u64))),
        CreateErrors,
    ),
    security(("bearer" = []))
)]
pub async fn create_doc(
    State(state): State<Shared>,
    Extension(who): Extension<Principal>,
    p: Result<Path<CollectionPath>, PathRejection>,
    headers: HeaderMap,
    b: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let CollectionPath { collection } = path(p)?;
    amberdb::validate_collection(&collection)?;
    require_write(&who, &collection)?;
    let key = uuid::Uuid::now_v7().to_string();
    // A create: a generated key can never match an existing document, and a client's
    // If-Match / If-None-Match cannot apply to a key it did not know.
    let mut headers = headers;
    headers.remove(header::IF_MATCH);
    headers.insert(header::IF_NONE_MATCH, HeaderValue::from_static("*"));
    let mut resp = write::single(
        &state,
        &who,
        collection.clone(),
        key.clone(),
        &headers,
        Method::Put,
        Some(b),
    )
    .await?;
    let location = format!("/v1/collections/{collection}/docs/{key}");
    if let Ok(v) = HeaderValue::from_str(&location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    *resp.status_mut() = StatusCode::CREATED;
    Ok(resp.into_response())
}
