//! Encryption key rotation (scope `admin`, issue 12): `POST /v1/admin/keys/rotate` starts
//! the rewrite that retires every key but the server's sealing key; its progress is the
//! `key_rotation` field of `GET /v1/admin/status`.
//!
//! The server's keyring is fixed while it runs: the new key is `encryption.key_file` and the
//! old one `encryption.old_key_file`, set before a restart (so every segment and checkpoint
//! written since the restart is already sealed with the new key). The route only starts the
//! rewrite of what is left (`Db::rotate_keys`); it never reads a key file named by a request.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use utoipa::openapi::{RefOr, Response};
use utoipa::ToSchema;

use super::require_admin;
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::state::Shared;

/// Body of `POST /v1/admin/keys/rotate` (optional).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateKeysRequest {
    /// The key id (8 hex digits, `amberdb key id --key-file NEW`) the operator expects the
    /// server to seal with; refused (409) when the server's sealing key is another one, so a
    /// restart that did not pick up the new key is noticed before anything is rewritten.
    pub key_id: Option<String>,
}

/// Where a key rotation is.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct KeyRotationBody {
    /// True while the rewrite runs.
    pub running: bool,
    /// The key id everything is re-sealed with.
    pub key_id: String,
    /// Files found sealed with another key.
    pub files_total: u64,
    /// Files re-sealed so far.
    pub files_done: u64,
    /// Bytes re-sealed so far.
    pub bytes_done: u64,
    /// Why the last rotation stopped, if it failed (start it again to finish).
    pub error: Option<String>,
}

impl From<amberdb::crypto::RotationStatus> for KeyRotationBody {
    fn from(s: amberdb::crypto::RotationStatus) -> Self {
        KeyRotationBody {
            running: s.running,
            key_id: s.key_id,
            files_total: s.files_total,
            files_done: s.files_done,
            bytes_done: s.bytes_done,
            error: s.error,
        }
    }
}

/// Response of `POST /v1/admin/keys/rotate`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RotateKeysResponse {
    /// The key id the data directory is being re-sealed with.
    pub key_id: String,
    /// Key ids the data directory's files needed when the rotation started.
    pub key_ids_in_use: Vec<String>,
    /// Follow progress in `GET /v1/admin/status`, field `key_rotation`.
    pub status: String,
}

/// Errors of the key rotation route.
pub struct KeysErrors;
impl utoipa::IntoResponses for KeysErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        super::error_responses(&[
            super::E400,
            super::E401,
            super::E403,
            super::E409,
            super::E503,
        ])
    }
}

/// Start re-sealing every checkpoint and log segment that is sealed with another key than the
/// server's sealing key (`encryption.key_file`), in the background. 409 when the server is
/// not encrypted, when `key_id` is not its sealing key, or while a rotation runs.
#[utoipa::path(
    post,
    path = "/v1/admin/keys/rotate",
    tag = "admin",
    request_body(content = RotateKeysRequest, description = "Optional (an empty body is accepted): the key id expected to seal"),
    responses((status = 202, description = "The rotation started", body = RotateKeysResponse), KeysErrors),
    security(("bearer" = []))
)]
pub async fn rotate(
    State(state): State<Shared>,
    Extension(who): Extension<Principal>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> ApiResult<(StatusCode, Json<RotateKeysResponse>)> {
    require_admin(&who)?;
    let body = super::body(body)?;
    let req: RotateKeysRequest = if body.iter().all(u8::is_ascii_whitespace) {
        RotateKeysRequest::default()
    } else {
        super::parse_json(&body, "invalid_body")?
    };
    let conflict = |code: &'static str, m: String| ApiError::new(StatusCode::CONFLICT, code, m);
    let Some(ring) = state.config.encryption.as_ref() else {
        return Err(conflict(
            "not_encrypted",
            "the server runs without encryption (no encryption.key_file): there is no key to \
             rotate"
                .into(),
        ));
    };
    let sealing = ring.primary().id().to_string();
    if let Some(want) = req.key_id.filter(|w| !w.eq_ignore_ascii_case(&sealing)) {
        return Err(conflict(
            "key_mismatch",
            format!(
                "the server seals with key id {sealing}, not {want}: put the new key in \
                 encryption.key_file and the old one in encryption.old_key_file, then restart"
            ),
        ));
    }
    let running = || {
        conflict(
            "rotation_running",
            "a key rotation is already running; follow it in GET /v1/admin/status".into(),
        )
    };
    // Claimed before anything else, and released when the rotation thread ends: of two
    // requests racing here, exactly one starts a rotation.
    let claim = state.rotation_claimed.clone();
    if claim
        .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        return Err(running());
    }
    let release = ReleaseOnDrop(claim);
    if state.db.stats().key_rotation.is_some_and(|r| r.running) {
        return Err(running());
    }
    let db = state.db.clone();
    let in_use = crate::blocking::blocking({
        let db = db.clone();
        move || db.key_ids_in_use()
    })
    .await??;
    std::thread::Builder::new()
        .name("amberdb-key-rotation".into())
        .spawn(move || {
            let _release = release;
            if let Err(e) = db.rotate_keys(&amberdb::backup::NoProgress) {
                tracing::error!(error = %e, "key rotation failed; start it again to finish");
            }
        })
        .map_err(|e| ApiError::internal(format!("starting the key rotation: {e}")))?;
    Ok((
        StatusCode::ACCEPTED,
        Json(RotateKeysResponse {
            key_id: sealing,
            key_ids_in_use: in_use,
            status: "started: follow key_rotation in GET /v1/admin/status".into(),
        }),
    ))
}

/// Releases the rotation claim when dropped (the request failed before starting one, or the
/// rotation thread ended).
struct ReleaseOnDrop(Arc<AtomicBool>);

impl Drop for ReleaseOnDrop {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}
