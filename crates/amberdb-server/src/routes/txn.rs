//! `POST /v1/txn`: an atomic batch of operations with per-operation results.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::{Extension, Json};

use super::{write, TxnErrors};
use crate::api::{TxnRequest, TxnResponse};
use crate::auth::Principal;
use crate::error::ApiResult;
use crate::state::Shared;

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
    write::transaction(&state, &who, &headers, b)
        .await
        .map(Json)
}
