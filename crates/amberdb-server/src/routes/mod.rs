//! The handlers of API v1, one module per resource, and what they share: path and query
//! extraction with JSON errors, scope checks, and the documented error responses of each kind
//! of endpoint (the OpenAPI document lists exactly these, and schemathesis holds us to them).

pub mod admin;
pub mod backups;
pub mod blobs;
pub mod changes;
pub mod collections;
pub mod documents;
pub mod events;
pub mod history;
pub mod keys;
pub mod migrate;
pub mod probes;
pub mod revert;
pub mod schema_read;
pub mod spec;
pub mod streams;
pub mod txn;
pub mod write;

use std::collections::BTreeMap;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query};
use utoipa::openapi::{ContentBuilder, RefOr, Response, ResponseBuilder};

use crate::auth::Principal;
use crate::error::{ApiError, ErrorBody};

/// Turns a path rejection into a 400 with our error body.
pub fn path<T>(p: Result<Path<T>, PathRejection>) -> Result<T, ApiError> {
    p.map(|Path(t)| t)
        .map_err(|e| ApiError::bad_request("invalid_path", e.body_text()))
}

/// Turns a query rejection into a 400 with our error body.
pub fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(t)| t)
        .map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))
}

/// 403 unless the caller may read `collection`.
pub fn require_read(p: &Principal, collection: &str) -> Result<(), ApiError> {
    if p.can_read(collection) {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!(
            "token {:?} has no read scope for collection {collection:?}",
            p.name()
        )))
    }
}

/// 403 unless the caller may write `collection`.
pub fn require_write(p: &Principal, collection: &str) -> Result<(), ApiError> {
    if p.can_write(collection) {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!(
            "token {:?} has no write scope for collection {collection:?}",
            p.name()
        )))
    }
}

/// 403 unless the caller may read `collection`, for a JSON Patch: its outcome depends on the
/// stored value (`test` answers 200 or 422 for a guessed value, `remove` and `replace` tell
/// whether a path exists), so applying one reveals content. A merge patch always applies and
/// needs the write scope only.
pub fn require_read_for_json_patch(p: &Principal, collection: &str) -> Result<(), ApiError> {
    require_read(p, collection).map_err(|e| ApiError {
        message: format!(
            "{}: a JSON Patch reveals the document's content (test, paths that must exist), so it needs read scope too; a merge patch needs write scope only",
            e.message
        ),
        ..e
    })
}

/// 403 unless the caller has the admin scope.
pub fn require_admin(p: &Principal) -> Result<(), ApiError> {
    if p.is_admin() {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!(
            "token {:?} lacks the admin scope",
            p.name()
        )))
    }
}

pub(crate) fn error_responses(list: &[(u16, &str)]) -> BTreeMap<String, RefOr<Response>> {
    list.iter()
        .map(|(status, desc)| {
            let content = ContentBuilder::new()
                .schema(Some(utoipa::openapi::Ref::from_schema_name("ErrorBody")))
                .build();
            let resp = ResponseBuilder::new()
                .description(*desc)
                .content("application/json", content)
                .build();
            (status.to_string(), RefOr::T(resp))
        })
        .collect()
}

const E400: (u16, &str) = (
    400,
    "Malformed request: bad collection name, key, query, header or JSON (codes invalid_*).",
);
pub(crate) const E401: (u16, &str) = (401, "Missing or unknown bearer token (code unauthorized).");
pub(crate) const E403: (u16, &str) = (
    403,
    "The token's scopes do not allow this (code forbidden).",
);
const E404: (u16, &str) = (404, "Document or collection not found (codes document_not_found, collection_not_found, route_not_found).");
const E409: (u16, &str) = (
    409,
    "Transaction conflict: details.conflicts names every failed precondition (code conflict).",
);
const E412: (u16, &str) = (
    412,
    "If-Match / If-None-Match not satisfied (code precondition_failed).",
);
const E413: (u16, &str) = (
    413,
    "Body, document or JSON Patch too large (codes payload_too_large, document_too_large, patch_too_large).",
);
const E415: (u16, &str) = (
    415,
    "Unsupported Content-Type (code unsupported_media_type).",
);
const E422: (u16, &str) = (422, "The patch could not be applied (code patch_failed).");
pub(crate) const E503: (u16, &str) = (
    503,
    "Poisoned, shutting down, timed out, or a transient I/O failure (codes poisoned, shutting_down, timeout, io_error).",
);

/// Errors of read endpoints.
pub struct ReadErrors;
impl utoipa::IntoResponses for ReadErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        error_responses(&[E400, E401, E403, E404, E412, E503])
    }
}

/// Errors of PUT and DELETE of one document.
pub struct WriteErrors;
impl utoipa::IntoResponses for WriteErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        error_responses(&[E400, E401, E403, E404, E412, E413, E415, E503])
    }
}

/// Errors of PATCH.
pub struct PatchErrors;
impl utoipa::IntoResponses for PatchErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        error_responses(&[E400, E401, E403, E404, E412, E413, E415, E422, E503])
    }
}

/// Errors of POST /v1/txn.
pub struct TxnErrors;
impl utoipa::IntoResponses for TxnErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        error_responses(&[E400, E401, E403, E409, E413, E415, E422, E503])
    }
}

/// Errors of admin endpoints.
pub struct AdminErrors;
impl utoipa::IntoResponses for AdminErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        error_responses(&[E401, E403, E503])
    }
}

/// Parses a request body as JSON, with a 400 that says where it went wrong.
pub fn parse_json<T: serde::de::DeserializeOwned>(
    body: &[u8],
    code: &'static str,
) -> Result<T, ApiError> {
    if body.is_empty() {
        return Err(ApiError::bad_request(
            code,
            "the request body is empty; send JSON",
        ));
    }
    crate::numbers::refuse_inexact(body)?;
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(code, format!("request body: {e}")))
}

/// Maps a body-reading rejection (usually the size limit) to an API error.
pub fn body(
    b: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<axum::body::Bytes, ApiError> {
    b.map_err(|e| {
        if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                axum::http::StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "the request body is larger than limits.body_bytes",
            )
        } else {
            ApiError::bad_request("invalid_body", e.body_text())
        }
    })
}

/// Keeps `ErrorBody` referenced so the schema is registered alongside the responses above.
#[allow(dead_code)]
fn _schema_anchor(_: ErrorBody) {}
