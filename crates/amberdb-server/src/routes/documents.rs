//! Documents: `GET|PUT|PATCH|DELETE /v1/collections/{c}/docs/{key}`, listing and export.
//!
//! The body of GET and PUT is the document's value itself; the metadata travels in headers
//! (`ETag` = version, `Amber-Version`, `Amber-Lsn`, `Amber-Schema-Version`) or, with
//! `?meta=true`, in the JSON envelope. Writes go through the write pipeline (`write.rs`),
//! which turns `If-Match` / `If-None-Match` into the engine's `if_version`.

use axum::body::{Body, Bytes};
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use serde::Deserialize;
use utoipa::IntoParams;

use super::write::{self, meta_headers, precondition_failed, Method};
use super::{path, query, require_read, schema_read, PatchErrors, ReadErrors, WriteErrors};
use crate::api::{ListResponse, WriteResult};
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::headers;
use crate::state::Shared;

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
    /// Read the document as it was at this time (RFC 3339): after the last commit at or
    /// before it. 404 if it did not exist then, 410 before the history window.
    pub as_of: Option<String>,
    /// Read the document as it was right after the commit with this LSN.
    #[param(minimum = 0)]
    pub as_of_lsn: Option<u64>,
    /// Return the document at this schema version (as `Amber-Accept-Schema`): migrated on
    /// read through the spec's `up` or `down` steps; 406 when no `down` leads there.
    #[param(minimum = 1)]
    pub schema_version: Option<u32>,
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
    /// List the collection as it was at this time (RFC 3339); 410 before the history window.
    pub as_of: Option<String>,
    /// List the collection as it was right after the commit with this LSN.
    #[param(minimum = 0)]
    pub as_of_lsn: Option<u64>,
    /// Return the documents at this schema version (as `Amber-Accept-Schema`): migrated on
    /// read through the spec's `up` or `down` steps; 406 when no `down` leads there.
    #[param(minimum = 1)]
    pub schema_version: Option<u32>,
}

/// Query of an export.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExportQuery {
    /// Return the documents at this schema version (as `Amber-Accept-Schema`): migrated on
    /// read through the spec's `up` or `down` steps; 406 when no `down` leads there.
    #[param(minimum = 1)]
    pub schema_version: Option<u32>,
}

fn validate(collection: &str, key: Option<&str>) -> Result<(), ApiError> {
    amberdb::validate_collection(collection)?;
    if let Some(k) = key {
        amberdb::validate_key(k)?;
    }
    Ok(())
}

/// Read one document.
#[utoipa::path(
    get,
    path = "/v1/collections/{collection}/docs/{key}",
    tag = "documents",
    params(DocPath, GetQuery,
        ("If-None-Match" = Option<String>, Header, description = "`*` or ETags; a match answers 304"),
        ("If-Match" = Option<String>, Header, description = "ETags; a mismatch answers 412"),
        ("Amber-Accept-Schema" = Option<u32>, Header, description = "Return the document at this schema version (as ?schema_version)")),
    responses(
        (status = 200, description = "The value (or, with meta=true, the envelope)", body = serde_json::Value,
            headers(("ETag" = String, description = "The version, quoted"), ("Amber-Version" = u64), ("Amber-Lsn" = u64), ("Amber-Schema-Version" = u32), ("Amber-Expires-At" = String, description = "When the document expires (RFC 3339); absent when it never does"), ("Amber-As-Of-Lsn" = u64, description = "With as_of or as_of_lsn: the LSN the point resolved to"))),
        (status = 304, description = "If-None-Match matched: not modified"),
        (status = 410, description = "as_of / as_of_lsn is older than the history window (code history_lost)", body = crate::error::ErrorBody),
        (status = 406, description = "No down migration leads to the schema version asked for (code no_down_migration)", body = crate::error::ErrorBody),
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
    let view = state.db.view();
    let reader = schema_read::reader(&state, &view, &collection, &headers, q.schema_version)?;
    if let Some(at) = super::history::as_of(q.as_of.as_deref(), q.as_of_lsn)? {
        let meta = q.meta == Some(true);
        return super::history::get_doc_as_of(&state, collection, key, at, meta, reader).await;
    }
    let doc = view.get(&collection, &key);
    let current = doc.as_ref().map_or(0, |d| d.meta.version);
    if let Some(cond) = headers::if_match(&headers)? {
        if !cond.matches(current) {
            return Err(precondition_failed(&collection, &key, current, "If-Match"));
        }
    }
    let doc = doc.ok_or_else(|| ApiError::doc_not_found(&collection, &key))?;
    if headers::if_none_match(&headers)?.is_some_and(|c| c.matches(current)) {
        // The headers a 200 would carry: the version a read would return it at, its expiry.
        let mut resp = StatusCode::NOT_MODIFIED.into_response();
        let returned = reader.target().unwrap_or(doc.meta.schema_version);
        meta_headers(
            resp.headers_mut(),
            doc.meta.version,
            doc.meta.lsn,
            Some(returned),
        );
        headers::set_expires_at(resp.headers_mut(), doc.meta.expires_at);
        schema_read::vary(resp.headers_mut());
        return Ok(resp);
    }
    let mut docs = schema_read::present(&reader, vec![doc]).await?;
    let doc = docs
        .pop()
        .ok_or_else(|| ApiError::internal("presented no document"))?;
    Ok(doc_response(&collection, &doc, q.meta == Some(true)))
}

/// The answer to a read of one document presented at a schema version: the value (or with
/// `meta`, the envelope with `stored_schema_version`) and the metadata headers.
pub fn doc_response(collection: &str, doc: &amberdb::schema::VersionedDoc, meta: bool) -> Response {
    let mut resp = if meta {
        axum::Json(doc.envelope_raw(collection)).into_response()
    } else {
        (
            [(header::CONTENT_TYPE, "application/json")],
            Body::from(Bytes::copy_from_slice(&doc.doc.value)),
        )
            .into_response()
    };
    let m = &doc.doc.meta;
    meta_headers(resp.headers_mut(), m.version, m.lsn, Some(m.schema_version));
    headers::set_expires_at(resp.headers_mut(), m.expires_at);
    schema_read::vary(resp.headers_mut());
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
        ("Amber-Schema-Version" = Option<u32>, Header, description = "Schema version of the value (default 1)"),
        ("Amber-TTL" = Option<u64>, Header, description = "The document expires this many seconds after the commit (1 to 100 years); without it or Amber-Expires-At, the collection's default TTL or none"),
        ("Amber-Expires-At" = Option<String>, Header, description = "The document expires at this RFC 3339 time (in the future, at most 100 years ahead)")),
    request_body(content = serde_json::Value, content_type = "application/json", description = "The document's value: any JSON"),
    responses(
        (status = 200, description = "Replaced", body = WriteResult, headers(("ETag" = String), ("Amber-Version" = u64), ("Amber-Lsn" = u64), ("Amber-Expires-At" = String))),
        (status = 201, description = "Created", body = WriteResult, headers(("ETag" = String), ("Amber-Version" = u64), ("Amber-Lsn" = u64), ("Amber-Expires-At" = String))),
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
    write::single(
        &state,
        &who,
        collection,
        key,
        &headers,
        Method::Put,
        Some(b),
    )
    .await
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
        ("Amber-Schema-Version" = Option<u32>, Header, description = "Schema version of the result (default: the stored document's)"),
        ("Amber-TTL" = Option<u64>, Header, description = "Refresh the expiry: this many seconds after the commit (without it or Amber-Expires-At a PATCH keeps the current expiry, or applies the collection's default TTL)"),
        ("Amber-Expires-At" = Option<String>, Header, description = "Set the expiry to this RFC 3339 time")),
    request_body(content(
        (serde_json::Value = "application/merge-patch+json"),
        (Vec<serde_json::Value> = "application/json-patch+json"),
    ), description = "A merge patch, or a JSON Patch array of operations"),
    responses(
        (status = 200, description = "Patched", body = WriteResult, headers(("ETag" = String), ("Amber-Version" = u64), ("Amber-Lsn" = u64), ("Amber-Expires-At" = String))),
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
    write::single(
        &state,
        &who,
        collection,
        key,
        &headers,
        Method::Patch,
        Some(b),
    )
    .await
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
    write::single(
        &state,
        &who,
        collection,
        key,
        &headers,
        Method::Delete,
        None,
    )
    .await
}

/// List a collection's documents in key order, one page at a time.
#[utoipa::path(
    get,
    path = "/v1/collections/{collection}/docs",
    tag = "documents",
    params(CollectionPath, ListQuery,
        ("Amber-Accept-Schema" = Option<u32>, Header, description = "Return the documents at this schema version (as ?schema_version)")),
    responses((status = 200, description = "A page of envelopes and the next cursor (with as_of or as_of_lsn: also `as_of_lsn`, and the Amber-As-Of-Lsn header)", body = ListResponse), super::history::HistoryErrors),
    security(("bearer" = []))
)]
pub async fn list_docs(
    State(state): State<Shared>,
    Extension(who): Extension<Principal>,
    p: Result<Path<CollectionPath>, PathRejection>,
    q: Result<Query<ListQuery>, QueryRejection>,
    h: HeaderMap,
) -> ApiResult<Response> {
    let CollectionPath { collection } = path(p)?;
    let q = query(q)?;
    validate(&collection, None)?;
    require_read(&who, &collection)?;
    let view = state.db.view();
    let reader = schema_read::reader(&state, &view, &collection, &h, q.schema_version)?;
    if let Some(at) = super::history::as_of(q.as_of.as_deref(), q.as_of_lsn)? {
        return super::history::list_docs_as_of(&state, collection, q, at, reader).await;
    }
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
    let page = view.list(&collection, &opts);
    // Envelopes as raw JSON text: values stored at the version asked for are served as
    // stored, never re-parsed.
    #[derive(serde::Serialize)]
    struct Body {
        documents: Vec<Box<serde_json::value::RawValue>>,
        next: Option<String>,
    }
    let documents = schema_read::present(&reader, page.docs)
        .await?
        .iter()
        .map(|d| d.envelope_raw(&collection))
        .collect();
    let mut resp = axum::Json(Body {
        documents,
        next: page.next,
    })
    .into_response();
    schema_read::vary(resp.headers_mut());
    Ok(resp)
}

/// Stream every document of a collection as NDJSON (one envelope per line), from one
/// consistent snapshot.
#[utoipa::path(
    get,
    path = "/v1/collections/{collection}/export",
    tag = "documents",
    params(CollectionPath, ExportQuery,
        ("Amber-Accept-Schema" = Option<u32>, Header, description = "Return the documents at this schema version (as ?schema_version)")),
    responses((status = 200, description = "One envelope per line", content_type = "application/x-ndjson", body = String),
        (status = 406, description = "No down migration leads to the schema version asked for (code no_down_migration)", body = crate::error::ErrorBody),
        ReadErrors),
    security(("bearer" = []))
)]
pub async fn export(
    State(state): State<Shared>,
    Extension(who): Extension<Principal>,
    p: Result<Path<CollectionPath>, PathRejection>,
    q: Result<Query<ExportQuery>, QueryRejection>,
    h: HeaderMap,
) -> ApiResult<Response> {
    let CollectionPath { collection } = path(p)?;
    let q = query(q)?;
    validate(&collection, None)?;
    require_read(&who, &collection)?;
    let view = state.db.view();
    let reader = schema_read::reader(&state, &view, &collection, &h, q.schema_version)?;
    let lsn = view.lsn();
    // Pages are cut from the same immutable view, so the export is a snapshot at `lsn` no
    // matter how long the client takes to read it; writers are never blocked.
    // A document that cannot be presented at the version asked for (no down path) ends the
    // stream with an error: the client sees a body cut short, never a partial export as a
    // whole one.
    let stream = futures_util::stream::unfold(Some(None::<String>), move |cursor| {
        let view = view.clone();
        let collection = collection.clone();
        let reader = reader.clone();
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
            let docs = match schema_read::present(&reader, page.docs).await {
                Ok(docs) => docs,
                Err(e) => return Some((Err(std::io::Error::other(e.message)), None)),
            };
            let mut buf = Vec::with_capacity(docs.len() * 128);
            for d in &docs {
                buf.extend_from_slice(d.envelope_raw(&collection).get().as_bytes());
                buf.push(b'\n');
            }
            Some((Ok(Bytes::from(buf)), page.next.map(Some)))
        }
    });
    let mut resp = Body::from_stream(stream).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    schema_read::vary(resp.headers_mut());
    resp.headers_mut()
        .insert(headers::LSN, HeaderValue::from(lsn));
    Ok(resp)
}

#[allow(dead_code)]
fn _list_response_schema(_: ListResponse) {}
