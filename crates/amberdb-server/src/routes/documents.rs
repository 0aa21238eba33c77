//! Documents: `GET|PUT|PATCH|DELETE /v1/collections/{c}/docs/{key}`, listing and export.
//!
//! The body of GET and PUT is the document's value itself; the metadata travels in headers
//! (`ETag` = version, `Amber-Version`, `Amber-Lsn`, `Amber-Schema-Version`) or, with
//! `?meta=true`, in the JSON envelope. `If-Match` / `If-None-Match` become the engine's
//! `if_version`, so the check and the write are one atomic step in the committer.

use axum::body::{Body, Bytes};
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use serde::Deserialize;
use utoipa::IntoParams;

use super::{
    body, parse_json, path, query, require_read, require_write, PatchErrors, ReadErrors,
    WriteErrors,
};
use crate::api::{ListResponse, WriteResult};
use crate::app::{blocking, Shared};
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::headers::{self, Condition};

/// Most documents one listing page may return.
pub const MAX_PAGE: usize = 10_000;
/// Page size when `limit` is not given.
pub const DEFAULT_PAGE: usize = 100;

/// Path of one document.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct DocPath {
    /// Collection name: `[a-z0-9_][a-z0-9_.-]{0,63}`.
    #[param(pattern = r"^[a-z0-9_][a-z0-9_.\-]{0,63}$")]
    pub collection: String,
    /// Document key: 1..=1024 bytes of UTF-8 without NUL, percent-encoded in the URL.
    #[param(min_length = 1, max_length = 1024)]
    pub key: String,
}

/// Path of one collection.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct CollectionPath {
    /// Collection name: `[a-z0-9_][a-z0-9_.-]{0,63}`.
    #[param(pattern = r"^[a-z0-9_][a-z0-9_.\-]{0,63}$")]
    pub collection: String,
}

/// Query of `GET` on one document.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct GetQuery {
    /// Return the envelope (key, value, version, schema_version, timestamps, lsn, sha256)
    /// instead of the bare value.
    #[serde(default)]
    pub meta: Option<bool>,
}

/// Query of a listing.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only keys starting with this prefix.
    pub prefix: Option<String>,
    /// Only keys strictly after this one: pass the previous page's `next`.
    pub start_after: Option<String>,
    /// Only keys strictly before this one.
    pub end_before: Option<String>,
    /// Page size, 1..=10000 (default 100).
    #[param(minimum = 1, maximum = 10000)]
    pub limit: Option<usize>,
}

fn validate(collection: &str, key: Option<&str>) -> Result<(), ApiError> {
    amberdb::validate_collection(collection)?;
    if let Some(k) = key {
        amberdb::validate_key(k)?;
    }
    Ok(())
}

fn meta_headers(h: &mut HeaderMap, version: u64, lsn: u64, schema_version: Option<u32>) {
    h.insert(header::ETAG, headers::etag(version));
    h.insert(headers::VERSION, HeaderValue::from(version));
    h.insert(headers::LSN, HeaderValue::from(lsn));
    if let Some(s) = schema_version {
        h.insert(headers::SCHEMA_VERSION, HeaderValue::from(s));
    }
}

fn precondition_failed(collection: &str, key: &str, actual: u64, header_name: &str) -> ApiError {
    ApiError::new(
        StatusCode::PRECONDITION_FAILED,
        "precondition_failed",
        format!("{header_name} does not match {collection}/{key} (current version {actual}; 0 = missing)"),
    )
    .details(serde_json::json!({"collection": collection, "key": key, "actual": actual}))
}

/// Turns `If-Match` / `If-None-Match` into the version the write must find, checking them
/// against the current version first so that an obvious mismatch never reaches the committer.
fn required_version(
    headers: &HeaderMap,
    collection: &str,
    key: &str,
    current: u64,
) -> Result<Option<u64>, ApiError> {
    let mut required = None;
    if let Some(cond) = headers::if_match(headers)? {
        if !cond.matches(current) {
            return Err(precondition_failed(collection, key, current, "If-Match"));
        }
        required = Some(current);
    }
    if let Some(cond) = headers::if_none_match(headers)? {
        let hit = match &cond {
            Condition::Any => current != 0,
            Condition::Versions(_) => cond.matches(current),
        };
        if hit {
            return Err(precondition_failed(
                collection,
                key,
                current,
                "If-None-Match",
            ));
        }
        required = Some(current);
    }
    Ok(required)
}

/// Engine conflicts of a single-document write: a failed `If-*` is 412; a patch of a missing
/// document without conditions is 404.
fn write_error(e: amberdb::Error, collection: &str, key: &str, conditional: bool) -> ApiError {
    match e {
        amberdb::Error::Conflict(cs) => {
            let actual = cs.first().map_or(0, |c| c.actual);
            let missing = cs
                .iter()
                .any(|c| c.reason == amberdb::ConflictReason::Missing);
            if missing && !conditional {
                ApiError::doc_not_found(collection, key)
            } else {
                precondition_failed(collection, key, actual, "the precondition")
            }
        }
        other => other.into(),
    }
}

/// Read one document.
#[utoipa::path(
    get,
    path = "/v1/collections/{collection}/docs/{key}",
    tag = "documents",
    params(DocPath, GetQuery,
        ("If-None-Match" = Option<String>, Header, description = "`*` or ETags; a match answers 304"),
        ("If-Match" = Option<String>, Header, description = "ETags; a mismatch answers 412")),
    responses(
        (status = 200, description = "The value (or, with meta=true, the envelope)", body = serde_json::Value,
            headers(("ETag" = String, description = "The version, quoted"), ("Amber-Version" = u64), ("Amber-Lsn" = u64), ("Amber-Schema-Version" = u32))),
        (status = 304, description = "If-None-Match matched: not modified"),
        ReadErrors,
    ),
    security(("bearer" = []))
)]
pub async fn get_doc(
    State(state): State<Shared>,
    Extension(who): Extension<Principal>,
    p: Result<Path<DocPath>, PathRejection>,
    q: Result<Query<GetQuery>, QueryRejection>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let DocPath { collection, key } = path(p)?;
    let q = query(q)?;
    validate(&collection, Some(&key))?;
    require_read(&who, &collection)?;
    let doc = state.db.get(&collection, &key);
    let current = doc.as_ref().map_or(0, |d| d.meta.version);
    if let Some(cond) = headers::if_match(&headers)? {
        if !cond.matches(current) {
            return Err(precondition_failed(&collection, &key, current, "If-Match"));
        }
    }
    let doc = doc.ok_or_else(|| ApiError::doc_not_found(&collection, &key))?;
    let mut resp = if headers::if_none_match(&headers)?.is_some_and(|c| c.matches(current)) {
        StatusCode::NOT_MODIFIED.into_response()
    } else if q.meta == Some(true) {
        axum::Json(doc.envelope_raw(&collection)).into_response()
    } else {
        (
            [(header::CONTENT_TYPE, "application/json")],
            Body::from(Bytes::copy_from_slice(&doc.value)),
        )
            .into_response()
    };
    meta_headers(
        resp.headers_mut(),
        doc.meta.version,
        doc.meta.lsn,
        Some(doc.meta.schema_version),
    );
    Ok(resp)
}

/// Commits a single-document transaction on the blocking pool.
async fn commit_one(
    state: &Shared,
    tx: amberdb::Transaction,
) -> Result<amberdb::Committed, amberdb::Error> {
    let db = state.db.clone();
    match blocking(move || db.commit(&tx)).await {
        Ok(r) => r,
        Err(_) => Err(amberdb::Error::Closed),
    }
}

fn write_response(status: StatusCode, r: WriteResult) -> Response {
    let mut resp = (status, axum::Json(&r)).into_response();
    if !r.deleted {
        meta_headers(resp.headers_mut(), r.version, r.lsn, r.schema_version);
    } else {
        resp.headers_mut()
            .insert(headers::LSN, HeaderValue::from(r.lsn));
    }
    resp
}

/// Create or replace one document. The body is the value.
#[utoipa::path(
    put,
    path = "/v1/collections/{collection}/docs/{key}",
    tag = "documents",
    params(DocPath,
        ("If-Match" = Option<String>, Header, description = "Only if the document is at one of these ETags (`*`: exists)"),
        ("If-None-Match" = Option<String>, Header, description = "`*`: only if the document does not exist"),
        ("Amber-Durability" = Option<String>, Header, description = "sync or buffered (default from config)"),
        ("Amber-Schema-Version" = Option<u32>, Header, description = "Schema version of the value (default 1)")),
    request_body(content = serde_json::Value, content_type = "application/json", description = "The document's value: any JSON"),
    responses(
        (status = 200, description = "Replaced", body = WriteResult, headers(("ETag" = String), ("Amber-Version" = u64), ("Amber-Lsn" = u64))),
        (status = 201, description = "Created", body = WriteResult, headers(("ETag" = String), ("Amber-Version" = u64), ("Amber-Lsn" = u64))),
        WriteErrors,
    ),
    security(("bearer" = []))
)]
pub async fn put_doc(
    State(state): State<Shared>,
    Extension(who): Extension<Principal>,
    p: Result<Path<DocPath>, PathRejection>,
    headers: HeaderMap,
    b: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let DocPath { collection, key } = path(p)?;
    validate(&collection, Some(&key))?;
    require_write(&who, &collection)?;
    headers::require_json(&headers)?;
    let bytes = body(b)?;
    let value: serde_json::Value = parse_json(&bytes, "invalid_json")?;
    let durability = headers::durability(&headers, &state.config)?;
    let schema_version = headers::schema_version(&headers)?;
    let current = state
        .db
        .get(&collection, &key)
        .map_or(0, |d| d.meta.version);
    let required = required_version(&headers, &collection, &key, current)?;
    let mut tx = amberdb::Transaction::new();
    let w = tx.put(&collection, &key, value);
    if let Some(v) = required {
        w.if_version(v);
    }
    if let Some(v) = schema_version {
        w.schema_version(v);
    }
    if let Some(d) = durability {
        tx.durability(d);
    }
    let c = commit_one(&state, tx)
        .await
        .map_err(|e| write_error(e, &collection, &key, required.is_some()))?;
    Ok(written(collection, key, &c, true))
}

/// The answer to a committed PUT or PATCH, from what the engine reports (version and schema
/// version after the write), never from what the request asked for.
fn written(collection: String, key: String, c: &amberdb::Committed, may_create: bool) -> Response {
    let r = c.results.first();
    let version = r.map_or(0, |r| r.version);
    let created = may_create && version == 1;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let r = WriteResult {
        collection,
        key,
        version,
        lsn: c.lsn,
        schema_version: r.map(|r| r.schema_version),
        created,
        deleted: false,
    };
    write_response(status, r)
}

/// Patch one document: `application/merge-patch+json` (RFC 7396) or
/// `application/json-patch+json` (RFC 6902).
#[utoipa::path(
    patch,
    path = "/v1/collections/{collection}/docs/{key}",
    tag = "documents",
    params(DocPath,
        ("If-Match" = Option<String>, Header, description = "Only if the document is at one of these ETags"),
        ("Amber-Durability" = Option<String>, Header, description = "sync or buffered"),
        ("Amber-Schema-Version" = Option<u32>, Header, description = "Schema version of the result (default: the stored document's)")),
    request_body(content(
        (serde_json::Value = "application/merge-patch+json"),
        (Vec<serde_json::Value> = "application/json-patch+json"),
    ), description = "A merge patch, or a JSON Patch array of operations"),
    responses(
        (status = 200, description = "Patched", body = WriteResult, headers(("ETag" = String), ("Amber-Version" = u64), ("Amber-Lsn" = u64))),
        PatchErrors,
    ),
    security(("bearer" = []))
)]
pub async fn patch_doc(
    State(state): State<Shared>,
    Extension(who): Extension<Principal>,
    p: Result<Path<DocPath>, PathRejection>,
    headers: HeaderMap,
    b: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let DocPath { collection, key } = path(p)?;
    validate(&collection, Some(&key))?;
    require_write(&who, &collection)?;
    let want = "application/merge-patch+json or application/json-patch+json";
    let ct = headers::content_type(&headers).ok_or_else(|| headers::unsupported("(none)", want))?;
    let bytes = body(b)?;
    let patch = match ct.as_str() {
        "application/merge-patch+json" => {
            amberdb::Patch::Merge(parse_json(&bytes, "invalid_json")?)
        }
        "application/json-patch+json" => {
            let v: serde_json::Value = parse_json(&bytes, "invalid_json")?;
            amberdb::Patch::Json(serde_json::from_value(v).map_err(|e| {
                ApiError::bad_request("invalid_patch", format!("not an RFC 6902 JSON Patch: {e}"))
            })?)
        }
        other => return Err(headers::unsupported(other, want)),
    };
    if matches!(patch, amberdb::Patch::Json(_)) {
        super::require_read_for_json_patch(&who, &collection)?;
    }
    let durability = headers::durability(&headers, &state.config)?;
    let schema_version = headers::schema_version(&headers)?;
    let current = state
        .db
        .get(&collection, &key)
        .map_or(0, |d| d.meta.version);
    let required = required_version(&headers, &collection, &key, current)?;
    if current == 0 && required.is_none() {
        return Err(ApiError::doc_not_found(&collection, &key));
    }
    let mut tx = amberdb::Transaction::new();
    let w = tx.patch(&collection, &key, patch);
    if let Some(v) = required {
        w.if_version(v);
    }
    if let Some(v) = schema_version {
        w.schema_version(v);
    }
    if let Some(d) = durability {
        tx.durability(d);
    }
    super::check_patch_ops(&tx)?;
    let c = commit_one(&state, tx)
        .await
        .map_err(|e| write_error(e, &collection, &key, required.is_some()))?;
    Ok(written(collection, key, &c, false))
}

/// Delete one document.
#[utoipa::path(
    delete,
    path = "/v1/collections/{collection}/docs/{key}",
    tag = "documents",
    params(DocPath,
        ("If-Match" = Option<String>, Header, description = "Only if the document is at one of these ETags"),
        ("Amber-Durability" = Option<String>, Header, description = "sync or buffered")),
    responses(
        (status = 200, description = "Deleted", body = WriteResult, headers(("Amber-Lsn" = u64))),
        WriteErrors,
    ),
    security(("bearer" = []))
)]
pub async fn delete_doc(
    State(state): State<Shared>,
    Extension(who): Extension<Principal>,
    p: Result<Path<DocPath>, PathRejection>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let DocPath { collection, key } = path(p)?;
    validate(&collection, Some(&key))?;
    require_write(&who, &collection)?;
    let durability = headers::durability(&headers, &state.config)?;
    let current = state
        .db
        .get(&collection, &key)
        .map_or(0, |d| d.meta.version);
    let required = required_version(&headers, &collection, &key, current)?;
    if current == 0 {
        return Err(ApiError::doc_not_found(&collection, &key));
    }
    let mut tx = amberdb::Transaction::new();
    // Always pin the version seen here: a concurrent delete then answers 404 below instead
    // of a silent no-op that looks like success.
    tx.delete(&collection, &key)
        .if_version(required.unwrap_or(current));
    if let Some(d) = durability {
        tx.durability(d);
    }
    let c = match commit_one(&state, tx).await {
        Ok(c) => c,
        Err(amberdb::Error::Conflict(cs)) if required.is_none() => {
            // Someone else wrote or deleted it first; without a condition from the client,
            // a concurrent write means "retry", a concurrent delete means "not found".
            let actual = cs.first().map_or(0, |c| c.actual);
            return Err(if actual == 0 {
                ApiError::doc_not_found(&collection, &key)
            } else {
                precondition_failed(
                    &collection,
                    &key,
                    actual,
                    "the version seen at request time",
                )
            });
        }
        Err(e) => return Err(write_error(e, &collection, &key, true)),
    };
    let r = WriteResult {
        collection,
        key,
        version: 0,
        lsn: c.lsn,
        schema_version: None,
        created: false,
        deleted: true,
    };
    Ok(write_response(StatusCode::OK, r))
}

/// List a collection's documents in key order, one page at a time.
#[utoipa::path(
    get,
    path = "/v1/collections/{collection}/docs",
    tag = "documents",
    params(CollectionPath, ListQuery),
    responses((status = 200, description = "A page of envelopes and the next cursor", body = ListResponse), ReadErrors),
    security(("bearer" = []))
)]
pub async fn list_docs(
    State(state): State<Shared>,
    Extension(who): Extension<Principal>,
    p: Result<Path<CollectionPath>, PathRejection>,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let CollectionPath { collection } = path(p)?;
    let q = query(q)?;
    validate(&collection, None)?;
    require_read(&who, &collection)?;
    let limit = q.limit.unwrap_or(DEFAULT_PAGE);
    if limit == 0 || limit > MAX_PAGE {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("limit must be 1..={MAX_PAGE}"),
        ));
    }
    let opts = amberdb::ListOptions {
        prefix: q.prefix,
        start_after: q.start_after,
        end_before: q.end_before,
        limit,
    };
    let page = state.db.list(&collection, &opts);
    // Envelopes as raw JSON text: stored values are served as stored, never re-parsed.
    #[derive(serde::Serialize)]
    struct Body {
        documents: Vec<Box<serde_json::value::RawValue>>,
        next: Option<String>,
    }
    let documents = page
        .docs
        .iter()
        .map(|d| d.envelope_raw(&collection))
        .collect();
    Ok(axum::Json(Body {
        documents,
        next: page.next,
    })
    .into_response())
}

/// Stream every document of a collection as NDJSON (one envelope per line), from one
/// consistent snapshot.
#[utoipa::path(
    get,
    path = "/v1/collections/{collection}/export",
    tag = "documents",
    params(CollectionPath),
    responses((status = 200, description = "One envelope per line", content_type = "application/x-ndjson", body = String), ReadErrors),
    security(("bearer" = []))
)]
pub async fn export(
    State(state): State<Shared>,
    Extension(who): Extension<Principal>,
    p: Result<Path<CollectionPath>, PathRejection>,
) -> ApiResult<Response> {
    let CollectionPath { collection } = path(p)?;
    validate(&collection, None)?;
    require_read(&who, &collection)?;
    let view = state.db.view();
    let lsn = view.lsn();
    // Pages are cut from the same immutable view, so the export is a snapshot at `lsn` no
    // matter how long the client takes to read it; writers are never blocked.
    let stream = futures_util::stream::unfold(Some(None::<String>), move |cursor| {
        let view = view.clone();
        let collection = collection.clone();
        async move {
            let start_after = cursor?;
            let page = view.list(
                &collection,
                &amberdb::ListOptions {
                    start_after,
                    limit: 1000,
                    ..Default::default()
                },
            );
            if page.docs.is_empty() {
                return None;
            }
            let mut buf = Vec::with_capacity(page.docs.len() * 128);
            for d in &page.docs {
                buf.extend_from_slice(d.envelope_raw(&collection).get().as_bytes());
                buf.push(b'\n');
            }
            Some((
                Ok::<_, std::convert::Infallible>(Bytes::from(buf)),
                page.next.map(Some),
            ))
        }
    });
    let mut resp = Body::from_stream(stream).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    resp.headers_mut()
        .insert(headers::LSN, HeaderValue::from(lsn));
    Ok(resp)
}

#[allow(dead_code)]
fn _list_response_schema(_: ListResponse) {}
