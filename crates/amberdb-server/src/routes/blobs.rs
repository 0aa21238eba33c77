//! Blobs: `PUT|GET|HEAD|DELETE /v1/collections/{c}/blobs/{key}`, listing, and staging for
//! transactions (`POST /v1/collections/{c}/blobs/{key}/staged`, then op `blob_ref`).
//!
//! Bodies stream both ways: an upload is pumped chunk by chunk through a small bounded
//! channel into the engine's blocking upload (`Db::stage_blob` / `Db::put_blob`), which holds
//! one 64 KiB buffer; a download is read on the blocking pool in chunks and sent as they come.
//! Neither holds a whole blob in memory. Blob routes are outside the request deadline (a
//! large transfer may take longer than any deadline for a JSON call) and outside
//! `limits.body_bytes`; `limits.blob_bytes` bounds them instead.

use std::io::{Read, Seek, SeekFrom};

use axum::body::{Body, Bytes};
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::documents::{CollectionPath, DocPath};
use super::write::{meta_headers, precondition_failed, required_version};
use super::{path, query, require_read, require_write, ReadErrors, WriteErrors};
use crate::auth::Principal;
use crate::blocking::blocking;
use crate::error::{ApiError, ApiResult};
use crate::headers;
use crate::state::Shared;

/// The SHA-256 of a blob's bytes, lowercase hex (on responses; on uploads, checked).
pub const SHA256: HeaderName = HeaderName::from_static("amber-sha256");
/// RFC 9530 digest of an upload (`sha-256=:<base64>:`), checked like `Amber-Sha256`.
pub const CONTENT_DIGEST: HeaderName = HeaderName::from_static("content-digest");

/// Chunks in flight between the connection and the engine, each at most one body frame.
const PIPE_CHUNKS: usize = 4;
/// Bytes read from a blob file per response chunk.
const READ_CHUNK: usize = 64 << 10;

/// A blob's metadata.
#[derive(Debug, Serialize, ToSchema)]
pub struct BlobBody {
    /// The blob's key.
    pub key: String,
    /// SHA-256 of its bytes, lowercase hex.
    pub sha256: String,
    /// Length in bytes.
    pub size: u64,
    /// The content type given on upload.
    pub content_type: String,
    /// The version (the ETag); grows on every write of the key.
    pub version: u64,
    /// LSN of the commit that wrote this version.
    pub lsn: u64,
    /// When the key was first written (RFC 3339).
    pub created_at: String,
    /// When this version was committed (RFC 3339).
    pub updated_at: String,
}

impl From<&amberdb::BlobInfo> for BlobBody {
    fn from(b: &amberdb::BlobInfo) -> Self {
        BlobBody {
            key: b.key.clone(),
            sha256: b.sha256_hex(),
            size: b.size,
            content_type: b.content_type.clone(),
            version: b.version,
            lsn: b.lsn,
            created_at: amberdb::format_micros(b.created_at),
            updated_at: amberdb::format_micros(b.updated_at),
        }
    }
}

/// A staged upload, to name in a transaction's `blob_ref` op within an hour.
#[derive(Debug, Serialize, ToSchema)]
pub struct StagedBody {
    /// The staging id (32 hex digits).
    pub staging_id: String,
    /// SHA-256 of the bytes, lowercase hex.
    pub sha256: String,
    /// Length in bytes.
    pub size: u64,
    /// The content type given on upload.
    pub content_type: String,
}

/// A page of blobs.
#[derive(Debug, Serialize, ToSchema)]
pub struct BlobListBody {
    /// The blobs, in key order.
    pub blobs: Vec<BlobBody>,
    /// Pass as `start_after` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// What a delete did.
#[derive(Debug, Serialize, ToSchema)]
pub struct BlobDeleted {
    /// LSN of the commit (the current LSN when nothing was deleted).
    pub lsn: u64,
    /// Whether a blob was deleted.
    pub deleted: bool,
}

/// Query of a blob listing.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BlobListQuery {
    /// Only keys starting with this prefix.
    pub prefix: Option<String>,
    /// Only keys strictly after this one: pass the previous page's `next`.
    pub start_after: Option<String>,
    /// Page size, 1..=10000 (default 100).
    #[param(minimum = 1, maximum = 10000)]
    pub limit: Option<usize>,
}

/// The upload's options from its headers: content type, declared digest.
fn upload_of(headers: &HeaderMap) -> Result<amberdb::BlobUpload, ApiError> {
    let content_type = headers::content_type(headers);
    let mut expected = None;
    if let Some(v) = headers.get(&SHA256) {
        let s = v.to_str().unwrap_or("").trim().to_ascii_lowercase();
        let mut out = [0u8; 32];
        hex::decode_to_slice(&s, &mut out).map_err(|_| {
            ApiError::bad_request("invalid_header", "Amber-Sha256 must be 64 hex digits")
        })?;
        expected = Some(out);
    }
    if let Some(v) = headers.get(&CONTENT_DIGEST) {
        let s = v.to_str().unwrap_or("");
        let b64 = s
            .split(',')
            .map(str::trim)
            .find_map(|p| {
                p.strip_prefix("sha-256=:")
                    .and_then(|r| r.strip_suffix(':'))
            })
            .ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_header",
                    "Content-Digest must carry sha-256=:<base64>: (RFC 9530)",
                )
            })?;
        use base64::Engine;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_header",
                    "Content-Digest sha-256 is not 32 bytes of base64",
                )
            })?;
        if expected.is_some_and(|e| e != raw) {
            return Err(ApiError::bad_request(
                "invalid_header",
                "Amber-Sha256 and Content-Digest disagree",
            ));
        }
        expected = Some(raw);
    }
    Ok(amberdb::BlobUpload {
        content_type,
        expected_sha256: expected,
    })
}

/// The receiving end of an upload's pipe, read by the engine on the blocking pool.
struct Pipe {
    rx: tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>,
    current: Bytes,
}

impl Read for Pipe {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.current = b,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        let chunk = self.current.split_to(n);
        buf.get_mut(..n)
            .ok_or_else(|| std::io::Error::other("short buffer"))?
            .copy_from_slice(&chunk);
        Ok(n)
    }
}

/// Runs `work` on the blocking pool with a reader over `body`, pumping the body into it;
/// stops pumping when `work` stops reading (a refused upload), so nothing piles up.
async fn with_body<T: Send + 'static>(
    body: Body,
    work: impl FnOnce(&mut dyn Read) -> T + Send + 'static,
) -> Result<T, ApiError> {
    let (tx, rx) = tokio::sync::mpsc::channel(PIPE_CHUNKS);
    let task = tokio::task::spawn_blocking(move || {
        let mut pipe = Pipe {
            rx,
            current: Bytes::new(),
        };
        work(&mut pipe)
    });
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|e| std::io::Error::other(format!("reading the request body: {e}")));
        let failed = chunk.is_err();
        if tx.send(chunk).await.is_err() || failed {
            break;
        }
    }
    drop(tx);
    task.await
        .map_err(|e| ApiError::internal(format!("engine task failed: {e}")))
}

fn blob_headers(h: &mut HeaderMap, b: &amberdb::BlobInfo) {
    meta_headers(h, b.version, b.lsn, None);
    if let Ok(v) = HeaderValue::from_str(&b.sha256_hex()) {
        h.insert(SHA256, v);
    }
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
}

fn blob_error(e: amberdb::Error, collection: &str, key: &str, actual: u64) -> ApiError {
    match e {
        amberdb::Error::Conflict(_) => {
            precondition_failed(collection, key, actual, "the precondition")
        }
        amberdb::Error::BlobTooLarge { limit, .. } => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "blob_too_large",
            e.to_string(),
        )
        .details(serde_json::json!({"collection": collection, "key": key, "limit": limit})),
        amberdb::Error::DigestMismatch { .. } => {
            ApiError::bad_request("digest_mismatch", e.to_string())
        }
        other => other.into(),
    }
}

/// A declared length over the limit is refused before any byte is read.
fn check_declared_length(
    state: &Shared,
    headers: &HeaderMap,
    collection: &str,
    key: &str,
) -> Result<(), ApiError> {
    let limit = state.config.blob_limit;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    match declared {
        Some(n) if n > limit => Err(blob_error(
            amberdb::Error::BlobTooLarge {
                collection: collection.into(),
                key: key.into(),
                limit,
            },
            collection,
            key,
            0,
        )),
        _ => Ok(()),
    }
}

/// Upload a blob: the body is its bytes, of any content type, streamed.
#[utoipa::path(
    put,
    path = "/v1/collections/{collection}/blobs/{key}",
    tag = "blobs",
    params(DocPath,
        ("Content-Type" = Option<String>, Header, description = "Stored and returned on GET (default application/octet-stream)"),
        ("Amber-Sha256" = Option<String>, Header, description = "SHA-256 of the body, hex: a mismatch answers 400 digest_mismatch and stores nothing"),
        ("Content-Digest" = Option<String>, Header, description = "RFC 9530 `sha-256=:<base64>:`, checked like Amber-Sha256"),
        ("If-Match" = Option<String>, Header, description = "Only if the blob is at one of these ETags (`*`: exists)"),
        ("If-None-Match" = Option<String>, Header, description = "`*`: only if the blob does not exist")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "The blob's bytes (any content type), up to limits.blob_bytes"),
    responses(
        (status = 200, description = "Replaced", body = BlobBody, headers(("ETag" = String), ("Amber-Sha256" = String))),
        (status = 201, description = "Created", body = BlobBody, headers(("ETag" = String), ("Amber-Sha256" = String))),
        WriteErrors,
    ),
    security(("bearer" = []))
)]
pub async fn put_blob(
    State(state): State<Shared>,
    Extension(who): Extension<Principal>,
    p: Result<Path<DocPath>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let DocPath { collection, key } = path(p)?;
    amberdb::validate_collection(&collection)?;
    amberdb::validate_key(&key)?;
    require_write(&who, &collection)?;
    check_declared_length(&state, &headers, &collection, &key)?;
    let upload = upload_of(&headers)?;
    let current = state.db.blob(&collection, &key).map_or(0, |b| b.version);
    let if_version = required_version(&headers, &collection, &key, current)?;
    let (db, c, k) = (state.db.clone(), collection.clone(), key.clone());
    let done = with_body(body, move |r| db.put_blob(&c, &k, r, &upload, if_version)).await?;
    let (_, info) = done.map_err(|e| blob_error(e, &collection, &key, current))?;
    let status = if info.version == 1 || current == 0 {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let mut resp = (status, Json(BlobBody::from(&info))).into_response();
    blob_headers(resp.headers_mut(), &info);
    Ok(resp)
}

/// Stage an upload for a transaction: the blob becomes visible only when a `POST /v1/txn`
/// names the returned `staging_id` in a `blob_ref` op (within an hour; later it is removed).
#[utoipa::path(
    post,
    path = "/v1/collections/{collection}/blobs/{key}/staged",
    tag = "blobs",
    params(DocPath,
        ("Content-Type" = Option<String>, Header, description = "Stored with the blob"),
        ("Amber-Sha256" = Option<String>, Header, description = "SHA-256 of the body, hex, checked"),
        ("Content-Digest" = Option<String>, Header, description = "RFC 9530 sha-256, checked")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "The blob's bytes"),
    responses((status = 201, description = "Staged", body = StagedBody), WriteErrors),
    security(("bearer" = []))
)]
pub async fn stage_blob(
    State(state): State<Shared>,
    Extension(who): Extension<Principal>,
    p: Result<Path<DocPath>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let DocPath { collection, key } = path(p)?;
    amberdb::validate_collection(&collection)?;
    amberdb::validate_key(&key)?;
    require_write(&who, &collection)?;
    check_declared_length(&state, &headers, &collection, &key)?;
    let upload = upload_of(&headers)?;
    let (db, c, k) = (state.db.clone(), collection.clone(), key.clone());
    let staged = with_body(body, move |r| db.stage_blob(&c, &k, r, &upload))
        .await?
        .map_err(|e| blob_error(e, &collection, &key, 0))?;
    let body = StagedBody {
        staging_id: staged.staging_id,
        sha256: hex::encode(staged.sha256),
        size: staged.size,
        content_type: staged.content_type,
    };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// A single `Range: bytes=...` against a blob of `size` bytes: `Ok(None)` for the whole
/// blob, `Err` for 416.
fn parse_range(headers: &HeaderMap, size: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(v) = headers.get(header::RANGE) else {
        return Ok(None);
    };
    let s = v.to_str().map_err(|_| ())?.trim();
    let spec = s.strip_prefix("bytes=").ok_or(())?;
    if spec.contains(',') {
        return Err(()); // one range only
    }
    let (a, b) = spec.split_once('-').ok_or(())?;
    let (a, b) = (a.trim(), b.trim());
    let (start, end) = if a.is_empty() {
        let n: u64 = b.parse().map_err(|_| ())?;
        if n == 0 || size == 0 {
            return Err(());
        }
        (size.saturating_sub(n), size - 1)
    } else {
        let start: u64 = a.parse().map_err(|_| ())?;
        let end = if b.is_empty() {
            size.saturating_sub(1)
        } else {
            b.parse::<u64>()
                .map_err(|_| ())?
                .min(size.saturating_sub(1))
        };
        (start, end)
    };
    if start >= size || end < start {
        return Err(());
    }
    Ok(Some((start, end)))
}

/// Download a blob (streamed), or a single byte range of it. HEAD answers the headers only.
#[utoipa::path(
    get,
    path = "/v1/collections/{collection}/blobs/{key}",
    tag = "blobs",
    params(DocPath,
        ("Range" = Option<String>, Header, description = "One range `bytes=a-b`, `bytes=a-` or `bytes=-n`: 206; unsatisfiable: 416"),
        ("If-None-Match" = Option<String>, Header, description = "`*` or ETags; a match answers 304"),
        ("If-Match" = Option<String>, Header, description = "ETags; a mismatch answers 412")),
    responses(
        (status = 200, description = "The bytes, with the upload's Content-Type", content_type = "application/octet-stream", body = Vec<u8>,
            headers(("ETag" = String), ("Amber-Sha256" = String), ("Content-Length" = u64), ("Accept-Ranges" = String))),
        (status = 206, description = "The requested range", content_type = "application/octet-stream", body = Vec<u8>, headers(("Content-Range" = String))),
        (status = 304, description = "If-None-Match matched: not modified"),
        (status = 416, description = "The range cannot be satisfied (code range_not_satisfiable)", body = crate::error::ErrorBody),
        ReadErrors,
    ),
    security(("bearer" = []))
)]
pub async fn get_blob(
    State(state): State<Shared>,
    Extension(who): Extension<Principal>,
    method: Method,
    p: Result<Path<DocPath>, PathRejection>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let DocPath { collection, key } = path(p)?;
    amberdb::validate_collection(&collection)?;
    amberdb::validate_key(&key)?;
    require_read(&who, &collection)?;
    let info = state.db.blob(&collection, &key);
    let current = info.as_ref().map_or(0, |b| b.version);
    if let Some(cond) = headers::if_match(&headers)? {
        if !cond.matches(current) {
            return Err(precondition_failed(&collection, &key, current, "If-Match"));
        }
    }
    let info = info.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "blob_not_found",
            format!("no blob {collection}/{key}"),
        )
    })?;
    if headers::if_none_match(&headers)?.is_some_and(|c| c.matches(current)) {
        let mut resp = StatusCode::NOT_MODIFIED.into_response();
        blob_headers(resp.headers_mut(), &info);
        return Ok(resp);
    }
    let range = match parse_range(&headers, info.size) {
        Ok(r) => r,
        Err(()) => {
            let mut resp = ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "range_not_satisfiable",
                format!("the blob is {} bytes; give one range inside it", info.size),
            )
            .into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{}", info.size)) {
                resp.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return Ok(resp);
        }
    };
    let (start, len) = match range {
        Some((s, e)) => (s, e - s + 1),
        None => (0, info.size),
    };
    let body = if method == Method::HEAD || len == 0 {
        Body::empty()
    } else {
        let (db, i) = (state.db.clone(), info.clone());
        let mut reader = blocking(move || db.open_blob(&i)).await??;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(PIPE_CHUNKS);
        tokio::task::spawn_blocking(move || {
            if let Err(e) = reader.seek(SeekFrom::Start(start)) {
                let _ = tx.blocking_send(Err(e));
                return;
            }
            let mut left = len;
            while left > 0 {
                let mut buf = vec![0u8; READ_CHUNK.min(left as usize)];
                match reader.read(&mut buf) {
                    Ok(0) => {
                        let _ = tx.blocking_send(Err(std::io::Error::other(
                            "blob file is shorter than its metadata",
                        )));
                        return;
                    }
                    Ok(n) => {
                        buf.truncate(n);
                        left -= n as u64;
                        if tx.blocking_send(Ok(Bytes::from(buf))).is_err() {
                            return; // the client went away
                        }
                    }
                    Err(e) => {
                        let _ = tx.blocking_send(Err(e));
                        return;
                    }
                }
            }
        });
        Body::from_stream(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)))
    };
    let status = if range.is_some() {
        StatusCode::PARTIAL_CONTENT
    } else {
        StatusCode::OK
    };
    let mut resp = (status, body).into_response();
    let h = resp.headers_mut();
    blob_headers(h, &info);
    if let Ok(v) = HeaderValue::from_str(&info.content_type) {
        h.insert(header::CONTENT_TYPE, v);
    }
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    if let Some((s, e)) = range {
        if let Ok(v) = HeaderValue::from_str(&format!("bytes {s}-{e}/{}", info.size)) {
            h.insert(header::CONTENT_RANGE, v);
        }
    }
    Ok(resp)
}

/// Delete a blob (its bytes are removed by garbage collection once no version in the
/// history window names them).
#[utoipa::path(
    delete,
    path = "/v1/collections/{collection}/blobs/{key}",
    tag = "blobs",
    params(DocPath,
        ("If-Match" = Option<String>, Header, description = "Only if the blob is at one of these ETags")),
    responses((status = 200, description = "Deleted (or already missing)", body = BlobDeleted), WriteErrors),
    security(("bearer" = []))
)]
pub async fn delete_blob(
    State(state): State<Shared>,
    Extension(who): Extension<Principal>,
    p: Result<Path<DocPath>, PathRejection>,
    headers: HeaderMap,
) -> ApiResult<Json<BlobDeleted>> {
    let DocPath { collection, key } = path(p)?;
    amberdb::validate_collection(&collection)?;
    amberdb::validate_key(&key)?;
    require_write(&who, &collection)?;
    let current = state.db.blob(&collection, &key).map_or(0, |b| b.version);
    let if_version = required_version(&headers, &collection, &key, current)?;
    let (db, c, k) = (state.db.clone(), collection.clone(), key.clone());
    let committed = blocking(move || {
        let mut t = amberdb::Transaction::new();
        t.delete_blob(&c, &k);
        if let Some(amberdb::Op::Blob(w)) = t.ops.last_mut() {
            w.if_version = if_version;
        }
        db.commit(&t)
    })
    .await?
    .map_err(|e| blob_error(e, &collection, &key, current))?;
    Ok(Json(BlobDeleted {
        lsn: committed.lsn,
        deleted: committed.results.first().is_some_and(|r| r.written),
    }))
}

/// List the blobs of a collection with their metadata, in key order.
#[utoipa::path(
    get,
    path = "/v1/collections/{collection}/blobs",
    tag = "blobs",
    params(CollectionPath, BlobListQuery),
    responses((status = 200, description = "A page of blobs", body = BlobListBody), ReadErrors),
    security(("bearer" = []))
)]
pub async fn list_blobs(
    State(state): State<Shared>,
    Extension(who): Extension<Principal>,
    p: Result<Path<CollectionPath>, PathRejection>,
    q: Result<Query<BlobListQuery>, QueryRejection>,
) -> ApiResult<Json<BlobListBody>> {
    let CollectionPath { collection } = path(p)?;
    let q = query(q)?;
    amberdb::validate_collection(&collection)?;
    require_read(&who, &collection)?;
    let limit = q.limit.unwrap_or(super::documents::DEFAULT_PAGE);
    if limit == 0 || limit > super::documents::MAX_PAGE {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("limit must be 1..={}", super::documents::MAX_PAGE),
        ));
    }
    let opts = amberdb::ListOptions {
        prefix: q.prefix,
        start_after: q.start_after,
        end_before: None,
        limit,
    };
    let (blobs, next) = state.db.list_blobs(&collection, &opts)?;
    Ok(Json(BlobListBody {
        blobs: blobs.iter().map(BlobBody::from).collect(),
        next,
    }))
}
