//! The write pipeline: every write that enters through HTTP (`PUT`, `PATCH` and `DELETE` of
//! one document, and `POST /v1/txn`) passes through here, so each rule is enforced in one
//! place, in this order:
//!
//! 1. scopes: write scope for every written collection, read scope too for a JSON Patch (its
//!    outcome reveals content: `test` answers 200 or 422 for a guessed value);
//! 2. the body: its media type, the body limit (`limits.body_bytes`), one JSON parse
//!    ([`parse_json`], the only place request values enter), and the number of JSON Patch
//!    operations ([`amberdb::limits::MAX_PATCH_OPS`], refused with 413 before any work);
//! 3. `If-Match` / `If-None-Match`, turned into the engine's `if_version` so the check and the
//!    write are one atomic step in the committer;
//! 4. the commit ([`crate::blocking::commit`]: awaited without a thread when small, else on
//!    the blocking pool); the engine checks the stored result of every write
//!    path (document size and nesting depth, also after a patch) and its errors map to
//!    `document_too_large` / `invalid_value` here;
//! 5. the answer: built from what the engine reports (version and schema version after the
//!    write), never from what the request asked for;
//! 6. errors: a 412 or 409 names current versions only of documents the token may read.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::{body, parse_json, require_read, require_read_for_json_patch, require_write};
use crate::api::{TxnOp, TxnRequest, TxnResponse, WriteResult};
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::headers::{self, Condition};
use crate::state::Shared;

/// Which single-document write a request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `PUT`: create or replace with the body as the value.
    Put,
    /// `PATCH`: a merge patch or a JSON Patch, by media type.
    Patch,
    /// `DELETE`.
    Delete,
}

/// The change a single-document request asks for, once its body is decoded.
enum Change {
    Put(serde_json::Value),
    Patch(amberdb::Patch),
    Delete,
}

/// One document write: `PUT`, `PATCH` or `DELETE /v1/collections/{c}/docs/{key}`.
pub async fn single(
    state: &Shared,
    who: &Principal,
    collection: String,
    key: String,
    headers: &HeaderMap,
    method: Method,
    b: Option<Result<Bytes, BytesRejection>>,
) -> ApiResult<Response> {
    single_unredacted(state, who, collection, key, headers, method, b)
        .await
        .map_err(|e| withhold_unreadable_versions(who, e))
}

async fn single_unredacted(
    state: &Shared,
    who: &Principal,
    collection: String,
    key: String,
    headers: &HeaderMap,
    method: Method,
    b: Option<Result<Bytes, BytesRejection>>,
) -> ApiResult<Response> {
    amberdb::validate_collection(&collection)?;
    amberdb::validate_key(&key)?;
    require_write(who, &collection)?;
    let body_len = b
        .as_ref()
        .and_then(|b| b.as_ref().ok())
        .map_or(0, Bytes::len);
    let change = decode(method, headers, b)?;
    if matches!(change, Change::Patch(amberdb::Patch::Json(_))) {
        require_read_for_json_patch(who, &collection)?;
    }
    let durability = headers::durability(headers, &state.config)?;
    let (schema_version, expiry) = match change {
        Change::Delete => (None, None),
        _ => (headers::schema_version(headers)?, headers::expiry(headers)?),
    };
    let current = state
        .db
        .get(&collection, &key)
        .map_or(0, |d| d.meta.version);
    let required = required_version(headers, &collection, &key, current)?;
    let mut tx = amberdb::Transaction::new();
    let w = match change {
        Change::Put(value) => tx.put(&collection, &key, value),
        Change::Patch(patch) => {
            if current == 0 && required.is_none() {
                return Err(ApiError::doc_not_found(&collection, &key));
            }
            tx.patch(&collection, &key, patch)
        }
        Change::Delete => {
            if current == 0 {
                return Err(ApiError::doc_not_found(&collection, &key));
            }
            // Always pin the version seen here: a concurrent delete then answers 404 below
            // instead of a silent no-op that looks like success.
            tx.delete(&collection, &key)
        }
    };
    match (method, required) {
        (Method::Delete, r) => {
            w.if_version(r.unwrap_or(current));
        }
        (_, Some(v)) => {
            w.if_version(v);
        }
        (_, None) => {}
    }
    if let Some(v) = schema_version {
        w.schema_version(v);
    }
    if let Some(e) = expiry {
        w.expiry = e;
    }
    if let Some(d) = durability {
        tx.durability(d);
    }
    check_patch_ops(&tx)?;
    let c = match crate::blocking::commit(&state.db, tx, body_len).await {
        Ok(c) => c,
        Err(amberdb::Error::Conflict(cs)) if method == Method::Delete && required.is_none() => {
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
        Err(e) => {
            let conditional = required.is_some() || method == Method::Delete;
            return Err(write_error(e, &collection, &key, conditional));
        }
    };
    Ok(write_result(collection, key, &c, method))
}

/// Decodes the body a method takes: a JSON value for `PUT`, a merge patch or JSON Patch (by
/// media type) for `PATCH`, nothing for `DELETE`.
fn decode(
    method: Method,
    headers: &HeaderMap,
    b: Option<Result<Bytes, BytesRejection>>,
) -> Result<Change, ApiError> {
    let bytes = |b: Option<Result<Bytes, BytesRejection>>| body(b.unwrap_or(Ok(Bytes::new())));
    match method {
        Method::Delete => Ok(Change::Delete),
        Method::Put => {
            headers::require_json(headers)?;
            let bytes = bytes(b)?;
            Ok(Change::Put(parse_json(&bytes, "invalid_json")?))
        }
        Method::Patch => {
            let want = "application/merge-patch+json or application/json-patch+json";
            let ct = headers::content_type(headers)
                .ok_or_else(|| headers::unsupported("(none)", want))?;
            let bytes = bytes(b)?;
            let patch = match ct.as_str() {
                "application/merge-patch+json" => {
                    amberdb::Patch::Merge(parse_json(&bytes, "invalid_json")?)
                }
                "application/json-patch+json" => {
                    let v: serde_json::Value = parse_json(&bytes, "invalid_json")?;
                    amberdb::Patch::Json(serde_json::from_value(v).map_err(|e| {
                        ApiError::bad_request(
                            "invalid_patch",
                            format!("not an RFC 6902 JSON Patch: {e}"),
                        )
                    })?)
                }
                other => return Err(headers::unsupported(other, want)),
            };
            Ok(Change::Patch(patch))
        }
    }
}

/// `POST /v1/txn`: the scopes of every operation, one JSON parse, the patch bound, then one
/// commit of all operations or none.
pub async fn transaction(
    state: &Shared,
    who: &Principal,
    headers: &HeaderMap,
    b: Result<Bytes, BytesRejection>,
) -> ApiResult<TxnResponse> {
    transaction_unredacted(state, who, headers, b)
        .await
        .map_err(|e| withhold_unreadable_versions(who, e))
}

async fn transaction_unredacted(
    state: &Shared,
    who: &Principal,
    headers: &HeaderMap,
    b: Result<Bytes, BytesRejection>,
) -> ApiResult<TxnResponse> {
    headers::require_json(headers)?;
    let bytes = body(b)?;
    let req: TxnRequest = parse_json(&bytes, "invalid_transaction")?;
    for (i, op) in req.ops.iter().enumerate() {
        let c = op.collection();
        let allowed = match op {
            TxnOp::Patch {
                json_patch: Some(_),
                ..
            } => require_write(who, c).and_then(|()| require_read_for_json_patch(who, c)),
            _ if op.is_write() => require_write(who, c),
            _ => require_read(who, c),
        };
        allowed.map_err(|e| ApiError {
            message: format!("ops[{i}]: {}", e.message),
            ..e
        })?;
    }
    let mut tx = req
        .to_transaction()
        .map_err(|m| ApiError::bad_request("invalid_transaction", m))?;
    check_patch_ops(&tx)?;
    if let Some(d) = headers::durability(headers, &state.config)? {
        tx.durability(d);
    }
    let committed = crate::blocking::commit(&state.db, tx, bytes.len()).await?;
    Ok(committed.into())
}

/// 413 for a JSON Patch with more operations than the engine applies
/// ([`amberdb::limits::MAX_PATCH_OPS`]): too much work for one request, refused before any
/// is done. The engine refuses it too; this only gives HTTP clients the status that says so.
fn check_patch_ops(tx: &amberdb::Transaction) -> Result<(), ApiError> {
    let max = amberdb::limits::MAX_PATCH_OPS;
    for (i, op) in tx.ops.iter().enumerate() {
        if let amberdb::Op::Write(amberdb::Write {
            kind: amberdb::WriteKind::Patch(amberdb::Patch::Json(p)),
            ..
        }) = op
        {
            if p.len() > max {
                return Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "patch_too_large",
                    format!(
                        "op {i}: the JSON Patch has {} operations; at most {max} are applied in one write",
                        p.len()
                    ),
                )
                .details(serde_json::json!({"operations": p.len(), "limit": max})));
            }
        }
    }
    Ok(())
}

/// 412 naming the current version (`actual`; 0 = missing) of `collection/key`.
pub fn precondition_failed(
    collection: &str,
    key: &str,
    actual: u64,
    header_name: &str,
) -> ApiError {
    ApiError::new(
        StatusCode::PRECONDITION_FAILED,
        "precondition_failed",
        format!("{header_name} does not match {collection}/{key} (current version {actual}; 0 = missing)"),
    )
    .details(serde_json::json!({"collection": collection, "key": key, "actual": actual}))
}

/// Turns `If-Match` / `If-None-Match` into the version the write must find, checking them
/// against the current version first so that an obvious mismatch never reaches the committer.
pub fn required_version(
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

/// The metadata headers of a document: `ETag`, `Amber-Version`, `Amber-Lsn` and (when known)
/// `Amber-Schema-Version`.
pub fn meta_headers(h: &mut HeaderMap, version: u64, lsn: u64, schema_version: Option<u32>) {
    h.insert(axum::http::header::ETAG, headers::etag(version));
    h.insert(headers::VERSION, HeaderValue::from(version));
    h.insert(headers::LSN, HeaderValue::from(lsn));
    if let Some(s) = schema_version {
        h.insert(headers::SCHEMA_VERSION, HeaderValue::from(s));
    }
}

/// The answer to a committed single-document write, from what the engine reports: the
/// version and schema version after the write (a PATCH keeps the stored schema version unless
/// the request set one), 201 for a PUT that created the document.
fn write_result(
    collection: String,
    key: String,
    c: &amberdb::Committed,
    method: Method,
) -> Response {
    let r = c.results.first();
    let deleted = method == Method::Delete;
    let version = if deleted {
        0
    } else {
        r.map_or(0, |r| r.version)
    };
    let created = method == Method::Put && version == 1;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let result = WriteResult {
        collection,
        key,
        version,
        lsn: c.lsn,
        schema_version: if deleted {
            None
        } else {
            r.map(|r| r.schema_version)
        },
        created,
        deleted,
        expires_at: r.and_then(|r| r.expires_at).map(amberdb::format_micros),
    };
    let mut resp = (status, axum::Json(&result)).into_response();
    if deleted {
        resp.headers_mut()
            .insert(headers::LSN, HeaderValue::from(result.lsn));
    } else {
        meta_headers(
            resp.headers_mut(),
            result.version,
            result.lsn,
            result.schema_version,
        );
        headers::set_expires_at(resp.headers_mut(), r.and_then(|r| r.expires_at));
    }
    resp
}

/// A 412 or 409 names the current version of the documents it is about; a token that may
/// write a collection but not read it must not learn versions (or anything else) from it, so
/// for such collections the version is withheld (`actual: null`) and the message says why.
fn withhold_unreadable_versions(who: &Principal, mut e: ApiError) -> ApiError {
    if e.status != StatusCode::CONFLICT && e.status != StatusCode::PRECONDITION_FAILED {
        return e;
    }
    let Some(details) = e.details.as_mut() else {
        return e;
    };
    let mut withheld = false;
    let mut redact = |d: &mut serde_json::Value| {
        let readable = d["collection"].as_str().is_some_and(|c| who.can_read(c));
        if !readable && d.get("actual").is_some() {
            d["actual"] = serde_json::Value::Null;
            withheld = true;
        }
    };
    if let Some(list) = details.get_mut("conflicts").and_then(|c| c.as_array_mut()) {
        list.iter_mut().for_each(&mut redact);
    } else if details.is_object() {
        redact(details);
    }
    if withheld {
        e.message = if e.status == StatusCode::CONFLICT {
            "transaction conflict: a precondition failed (details.conflicts; current versions of documents this token may not read are withheld)"
        } else {
            "the precondition failed (the current version is shown only to tokens that may read this collection)"
        }
        .to_owned();
    }
    e
}
