//! API errors: an HTTP status, a stable machine-readable code, a sentence, and details.
//!
//! Every error response has the body `{"error": {"code", "message", "details"}}`. Codes are
//! part of the API contract (docs/API.md lists them): clients branch on `code`, people read
//! `message`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// An error on its way to the client.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable code, e.g. `precondition_failed`.
    pub code: &'static str,
    /// One sentence for people.
    pub message: String,
    /// Structured context (e.g. the failed preconditions of a transaction).
    pub details: Option<serde_json::Value>,
}

/// The JSON body of every error response.
#[derive(Debug, Serialize, serde::Deserialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorObject,
}

/// The error object inside [`ErrorBody`].
#[derive(Debug, Serialize, serde::Deserialize, ToSchema)]
pub struct ErrorObject {
    /// Stable machine-readable code (see docs/API.md).
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
    /// Structured context; for `conflict`, `{"conflicts": [...]}` naming every failed precondition.
    pub details: Option<serde_json::Value>,
}

impl ApiError {
    /// A new error without details.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            details: None,
        }
    }

    /// Adds structured details.
    pub fn details(mut self, details: serde_json::Value) -> Self {
        self.details = Some(details);
        self
    }

    /// 400 with a code.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 404 document_not_found.
    pub fn doc_not_found(collection: &str, key: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "document_not_found",
            format!("document {collection}/{key} does not exist"),
        )
        .details(serde_json::json!({"collection": collection, "key": key}))
    }

    /// 403 forbidden.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 500 internal.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    /// 503 shutting_down.
    pub fn shutting_down() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "the server is shutting down; retry against another instance or after restart",
        )
    }
}

impl From<amberdb::Error> for ApiError {
    fn from(e: amberdb::Error) -> Self {
        use amberdb::Error as E;
        let msg = e.to_string();
        match e {
            E::InvalidCollection { name, .. } => {
                ApiError::bad_request("invalid_collection", msg).details(serde_json::json!({"collection": name}))
            }
            E::InvalidKey { key, .. } => ApiError::bad_request("invalid_key", msg).details(serde_json::json!({"key": key})),
            E::InvalidValue(_) => ApiError::bad_request("invalid_value", msg),
            E::TooLarge { collection, key, size, limit } => ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "document_too_large", msg)
                .details(serde_json::json!({"collection": collection, "key": key, "size": size, "limit": limit})),
            E::Conflict(conflicts) => ApiError::new(StatusCode::CONFLICT, "conflict", msg)
                .details(serde_json::json!({ "conflicts": conflicts })),
            E::PatchFailed { collection, key, .. } => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "patch_failed", msg)
                .details(serde_json::json!({"collection": collection, "key": key})),
            E::Poisoned { .. } => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "poisoned", msg),
            // The batch's write or fsync failed after its bytes may have reached the disk: the
            // commit may be present after a restart. Not safe to retry blindly.
            E::CommitOutcomeUnknown { lsn, .. } => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "commit_outcome_unknown", msg)
                    .details(serde_json::json!({"lsn": lsn}))
            }
            E::TransactionTooLarge { size, ops, limit } => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "transaction_too_large", msg)
                    .details(serde_json::json!({"size": size, "ops": ops, "limit": limit}))
            }
            E::Closed => ApiError::shutting_down(),
            E::InvalidArgument(_) => ApiError::bad_request("invalid_argument", msg),
            E::HistoryLost { retained_from_lsn } => {
                ApiError::new(StatusCode::GONE, "history_lost", msg)
                    .details(serde_json::json!({"retained_from_lsn": retained_from_lsn}))
            }
            // A failure that did not poison (e.g. out of file descriptors while opening a new
            // log segment): nothing was written, the database stays writable, retry.
            E::Io { .. } => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "io_error", msg),
            E::BlobTooLarge { limit, .. } => ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "blob_too_large", msg)
                .details(serde_json::json!({"limit": limit})),
            E::DigestMismatch { .. } => ApiError::bad_request("digest_mismatch", msg),
            E::SchemaValidation { collection, key, schema_version, errors, total } => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "schema_validation_failed", msg).details(serde_json::json!({
                    "collection": collection, "key": key, "schema_version": schema_version, "errors": errors, "total": total
                }))
            }
            E::NoDownMigration { collection, from, to, missing_from, missing_to } => {
                ApiError::new(StatusCode::NOT_ACCEPTABLE, "no_down_migration", msg).details(serde_json::json!({
                    "collection": collection, "from": from, "to": to, "missing": {"from": missing_from, "to": missing_to}
                }))
            }
            E::MigrationFailed { collection, key, from, to, .. } => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "migration_failed", msg)
                    .details(serde_json::json!({"collection": collection, "key": key, "from": from, "to": to}))
            }
            _ => ApiError::internal(msg),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::warn!(code = self.code, message = %self.message, "request failed");
        }
        let body = serde_json::json!({
            "error": { "code": self.code, "message": self.message, "details": self.details }
        });
        let mut resp = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"amberdb\""),
            );
        }
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        resp
    }
}

/// Result alias for handlers.
pub type ApiResult<T> = Result<T, ApiError>;
