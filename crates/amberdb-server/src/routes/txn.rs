//! `POST /v1/txn`: an atomic batch of operations with per-operation results.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::{Extension, Json};

use super::{
    body, parse_json, require_read, require_read_for_json_patch, require_write, TxnErrors,
};
use crate::api::{TxnRequest, TxnResponse};
use crate::app::{blocking, Shared};
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::headers;

/// Commit a transaction: all operations or none. On a failed precondition the answer is 409
/// and `error.details.conflicts` names every one (op index, document, expected and actual
/// version, reason).
#[utoipa::path(
    post,
    path = "/v1/txn",
    tag = "transactions",
    params(("Amber-Durability" = Option<String>, Header, description = "sync or buffered (default from config)")),
    request_body(content = TxnRequest, content_type = "application/json"),
    responses((status = 200, description = "Committed", body = TxnResponse), TxnErrors),
    security(("bearer" = []))
)]
pub async fn commit(
    State(state): State<Shared>,
    Extension(who): Extension<Principal>,
    headers: HeaderMap,
    b: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<TxnResponse>> {
    headers::require_json(&headers)?;
    let bytes = body(b)?;
    let req: TxnRequest = parse_json(&bytes, "invalid_transaction")?;
    for (i, op) in req.ops.iter().enumerate() {
        let c = op.collection();
        let allowed = match op {
            crate::api::TxnOp::Patch {
                json_patch: Some(_),
                ..
            } => require_write(&who, c).and_then(|()| require_read_for_json_patch(&who, c)),
            _ if op.is_write() => require_write(&who, c),
            _ => require_read(&who, c),
        };
        allowed.map_err(|e| ApiError {
            message: format!("ops[{i}]: {}", e.message),
            ..e
        })?;
    }
    let mut tx = req
        .to_transaction()
        .map_err(|m| ApiError::bad_request("invalid_transaction", m))?;
    super::check_patch_ops(&tx)?;
    if let Some(d) = headers::durability(&headers, &state.config)? {
        tx.durability(d);
    }
    let db = state.db.clone();
    let committed = blocking(move || db.commit(&tx)).await??;
    Ok(Json(committed.into()))
}
