//! Streams (issue 13): `POST /v1/streams/{s}/append` (one JSON value, or NDJSON: many, in one
//! commit; `?expected_seq=N`), `GET /v1/streams/{s}` (by `from_seq` or `from_time`, JSON or
//! NDJSON by `Accept`), `GET /v1/streams`, `DELETE /v1/streams/{s}`, and
//! `GET|PUT /v1/streams/{s}/retention`. A stream name follows the collection rules and token
//! scopes name streams like collections. Every count and size is bounded before work is done
//! (`amberdb::limits`, and the server's body limit).

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::{body, parse_json, path, query, require_read, require_write};
use super::{ReadErrors, TxnErrors, WriteErrors};
use crate::auth::Principal;
use crate::blocking::blocking;
use crate::error::{ApiError, ApiResult};
use crate::headers;
use crate::state::Shared;

/// The stream in the path.
#[derive(Debug, Deserialize, IntoParams)]
pub struct StreamPath {
    /// Stream name (the collection rules: `a-z 0-9 _ . -`, at most 64 bytes).
    #[param(pattern = r"^[a-z0-9_][a-z0-9_.\-]{0,63}$")]
    pub stream: String,
}

/// `?expected_seq=` of an append.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AppendQuery {
    /// Append only if the stream's last sequence number is this (0: none yet); else 409.
    pub expected_seq: Option<u64>,
}

/// Where a read starts and how much it returns.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ReadQuery {
    /// First sequence number to return (default 1; a trimmed one starts at the first kept).
    pub from_seq: Option<u64>,
    /// Or: the first entry committed at or after this RFC 3339 time.
    pub from_time: Option<String>,
    /// Most entries (default 100, at most 10000; also at most 16 MiB of values).
    pub limit: Option<usize>,
    /// Read the stream as it was at this RFC 3339 time (the last commit at or before it),
    /// inside the history window.
    pub as_of: Option<String>,
    /// Or: as it was right after the commit with this LSN.
    pub as_of_lsn: Option<u64>,
}

/// The result of an append.
#[derive(Debug, Serialize, ToSchema)]
pub struct AppendResponse {
    /// The stream.
    pub stream: String,
    /// LSN of the commit.
    pub lsn: u64,
    /// Commit time (microseconds since the epoch): every appended entry's time.
    pub commit_ts: u64,
    /// Sequence number of the first appended entry.
    pub first_seq: u64,
    /// Sequence number of the last appended entry (the stream's new last_seq).
    pub last_seq: u64,
}

/// One entry.
#[derive(Debug, Serialize, ToSchema)]
pub struct EntryBody {
    /// Sequence number (gap-free from 1).
    pub seq: u64,
    /// Commit time, microseconds since the epoch.
    pub commit_ts: u64,
    /// Commit time, RFC 3339.
    pub commit_time: String,
    /// The entry.
    #[schema(value_type = Object)]
    pub value: Value,
}

/// A page of entries.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReadResponse {
    /// The stream.
    pub stream: String,
    /// Entries in sequence order.
    pub entries: Vec<EntryBody>,
    /// `from_seq` of the next page.
    pub next_seq: u64,
    /// First retained sequence number (null when empty).
    pub first_seq: Option<u64>,
    /// Last sequence number appended (with as_of: the last of that point still retained).
    pub last_seq: u64,
    /// With as_of or as_of_lsn: the LSN the point resolved to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub as_of_lsn: Option<u64>,
}

/// A stream's counts.
#[derive(Debug, Serialize, ToSchema)]
pub struct StreamBody {
    /// The stream.
    pub name: String,
    /// Entries retained.
    pub entries: u64,
    /// First retained sequence number (null when empty).
    pub first_seq: Option<u64>,
    /// Last sequence number appended (0 when none).
    pub last_seq: u64,
    /// Bytes of the retained entries in the stream files.
    pub bytes: u64,
    /// Retention in force.
    pub retention: RetentionBody,
}

/// All streams the caller may read.
#[derive(Debug, Serialize, ToSchema)]
pub struct StreamList {
    /// By name.
    pub streams: Vec<StreamBody>,
}

/// A stream's retention: entries beyond either limit are trimmed from the head.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetentionBody {
    /// Most entries kept (null: no limit).
    #[schema(minimum = 1)]
    pub max_entries: Option<u64>,
    /// Entries older than this many seconds are trimmed (null: no limit).
    #[schema(minimum = 1)]
    pub max_age_s: Option<u64>,
}

/// The result of a delete.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeleteResponse {
    /// The stream.
    pub stream: String,
    /// Whether it existed.
    pub deleted: bool,
}

impl From<amberdb::Retention> for RetentionBody {
    fn from(r: amberdb::Retention) -> Self {
        RetentionBody {
            max_entries: r.max_entries,
            max_age_s: r.max_age_s,
        }
    }
}

impl From<amberdb::StreamInfo> for StreamBody {
    fn from(i: amberdb::StreamInfo) -> Self {
        StreamBody {
            name: i.name,
            entries: i.entries,
            first_seq: i.first_seq,
            last_seq: i.last_seq,
            bytes: i.bytes,
            retention: i.retention.into(),
        }
    }
}

const NDJSON: &str = "application/x-ndjson";

fn stream_not_found(stream: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "stream_not_found",
        format!("no stream {stream:?}"),
    )
}

fn checked(p: Result<Path<StreamPath>, PathRejection>) -> Result<String, ApiError> {
    let StreamPath { stream } = path(p)?;
    amberdb::validate_collection(&stream)?;
    Ok(stream)
}

/// The entries of an append body: one JSON value, or NDJSON (one value per non-empty line),
/// at most `limits::MAX_APPEND_ENTRIES`, counted before any is parsed.
fn entries(h: &HeaderMap, bytes: &[u8]) -> Result<Vec<Value>, ApiError> {
    match headers::content_type(h).as_deref() {
        Some(NDJSON) => {
            let lines: Vec<&[u8]> = bytes
                .split(|&b| b == b'\n')
                .filter(|l| l.iter().any(|b| !b.is_ascii_whitespace()))
                .collect();
            if lines.len() > amberdb::limits::MAX_APPEND_ENTRIES {
                return Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too_many_entries",
                    format!(
                        "{} entries; an append may add at most {}",
                        lines.len(),
                        amberdb::limits::MAX_APPEND_ENTRIES
                    ),
                ));
            }
            if lines.is_empty() {
                return Err(ApiError::bad_request(
                    "invalid_entry",
                    "the NDJSON body holds no entry",
                ));
            }
            lines
                .iter()
                .enumerate()
                .map(|(i, l)| {
                    parse_json::<Value>(l, "invalid_entry").map_err(|e| ApiError {
                        message: format!("line {}: {}", i + 1, e.message),
                        ..e
                    })
                })
                .collect()
        }
        _ => {
            headers::require_json(h).map_err(|_| {
                headers::unsupported(
                    &headers::content_type(h).unwrap_or_default(),
                    "application/json or application/x-ndjson",
                )
            })?;
            Ok(vec![parse_json(bytes, "invalid_entry")?])
        }
    }
}

/// Append one entry (a JSON body) or many (an NDJSON body, `Content-Type:
/// application/x-ndjson`) in one atomic commit. They get the next sequence numbers and the
/// commit's time; the first append creates the stream. With `expected_seq`, a stream whose
/// last sequence number differs answers 409 (`error.details.conflicts[0]` has `expected` and
/// `actual`) and nothing is appended, so a retrying client appends exactly once.
#[utoipa::path(
    post,
    path = "/v1/streams/{stream}/append",
    tag = "streams",
    params(StreamPath, AppendQuery, ("Amber-Durability" = Option<String>, Header, description = "sync or buffered (default from config)")),
    request_body(content = Object, description = "One JSON value, or NDJSON (one value per line)", content_type = "application/json"),
    responses((status = 200, description = "Appended", body = AppendResponse), TxnErrors),
    security(("bearer" = []))
)]
pub async fn append(
    State(state): State<Shared>,
    Extension(who): Extension<Principal>,
    p: Result<Path<StreamPath>, PathRejection>,
    q: Result<Query<AppendQuery>, QueryRejection>,
    h: HeaderMap,
    b: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<AppendResponse>> {
    let stream = checked(p)?;
    require_write(&who, &stream)?;
    let AppendQuery { expected_seq } = query(q)?;
    let durability = headers::durability(&h, &state.config)?;
    let bytes = body(b)?;
    let values = entries(&h, &bytes)?;
    let n = values.len() as u64;
    let db = state.db.clone();
    let s = stream.clone();
    let a = blocking(move || {
        let mut tx = amberdb::Transaction::new();
        tx.append(&s, values, expected_seq);
        if let Some(d) = durability {
            tx.durability(d);
        }
        db.commit(&tx)
    })
    .await??;
    // An append's result names the stream's last sequence number after it.
    let last_seq = a.results.first().map_or(0, |r| r.version);
    Ok(Json(AppendResponse {
        first_seq: last_seq + 1 - n,
        stream,
        lsn: a.lsn,
        commit_ts: a.commit_ts,
        last_seq,
    }))
}

/// Read entries from `from_seq` (default 1) or `from_time`, at most `limit`. With `Accept:
/// application/x-ndjson` the answer is one entry object per line (the page's `next_seq` is in
/// the `Amber-Next-Seq` header). With `as_of` or `as_of_lsn`: the stream as it was at that
/// point (the entries appended by then that retention has not trimmed since), inside the
/// history window.
#[utoipa::path(
    get,
    path = "/v1/streams/{stream}",
    tag = "streams",
    params(StreamPath, ReadQuery),
    responses(
        (status = 200, description = "A page of entries (JSON, or NDJSON by Accept); with as_of or as_of_lsn also `as_of_lsn` and the Amber-As-Of-Lsn header", body = ReadResponse),
        (status = 410, description = "as_of / as_of_lsn is older than the history window (code history_lost)", body = crate::error::ErrorBody),
        ReadErrors
    ),
    security(("bearer" = []))
)]
pub async fn read(
    State(state): State<Shared>,
    Extension(who): Extension<Principal>,
    p: Result<Path<StreamPath>, PathRejection>,
    q: Result<Query<ReadQuery>, QueryRejection>,
    h: HeaderMap,
) -> ApiResult<Response> {
    let stream = checked(p)?;
    require_read(&who, &stream)?;
    let q = query(q)?;
    let from = match (q.from_seq, &q.from_time) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "invalid_query",
                "give from_seq or from_time, not both",
            ))
        }
        (_, Some(t)) => amberdb::StreamFrom::Time(super::history::parse_time("from_time", t)?),
        (s, None) => amberdb::StreamFrom::Seq(s.unwrap_or(1)),
    };
    let limit = q.limit.unwrap_or(100);
    if limit == 0 || limit > amberdb::limits::MAX_STREAM_READ_ENTRIES {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!(
                "limit must be 1 to {}",
                amberdb::limits::MAX_STREAM_READ_ENTRIES
            ),
        ));
    }
    let at = super::history::as_of(q.as_of.as_deref(), q.as_of_lsn)?;
    if state.db.stream(&stream).is_none() {
        return Err(stream_not_found(&stream));
    }
    let db = state.db.clone();
    let s = stream.clone();
    let (as_of_lsn, page) = match at {
        None => (
            None,
            blocking(move || db.read_stream(&s, from, limit)).await??,
        ),
        Some(at) => match blocking(move || db.read_stream_at(&s, from, limit, at)).await?? {
            Some((lsn, page)) => (Some(lsn), page),
            None => {
                return Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    "stream_not_found",
                    format!(
                        "no stream {stream:?} from that point is kept: it did not exist then, \
                         or it was deleted (or deleted and created again) since"
                    ),
                ))
            }
        },
    };
    let entries = page
        .entries
        .iter()
        .map(|e| {
            Ok(EntryBody {
                seq: e.seq,
                commit_ts: e.commit_ts,
                commit_time: amberdb::format_micros(e.commit_ts),
                value: e.json()?,
            })
        })
        .collect::<Result<Vec<_>, amberdb::Error>>()?;
    let wants_ndjson = h
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains(NDJSON));
    if wants_ndjson {
        let mut out = Vec::new();
        for e in &entries {
            serde_json::to_writer(&mut out, e).map_err(|e| ApiError::internal(e.to_string()))?;
            out.push(b'\n');
        }
        let mut resp = out.into_response();
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(NDJSON));
        resp.headers_mut()
            .insert("amber-next-seq", HeaderValue::from(page.next_seq));
        if let Some(lsn) = as_of_lsn {
            resp.headers_mut()
                .insert(super::history::AS_OF_LSN, HeaderValue::from(lsn));
        }
        return Ok(resp);
    }
    let mut resp = Json(ReadResponse {
        stream,
        entries,
        next_seq: page.next_seq,
        first_seq: page.first_seq,
        last_seq: page.last_seq,
        as_of_lsn,
    })
    .into_response();
    if let Some(lsn) = as_of_lsn {
        resp.headers_mut()
            .insert(super::history::AS_OF_LSN, HeaderValue::from(lsn));
    }
    Ok(resp)
}

/// Every stream the caller may read, with counts and first/last sequence numbers.
#[utoipa::path(
    get,
    path = "/v1/streams",
    tag = "streams",
    responses((status = 200, description = "Streams by name", body = StreamList), ReadErrors),
    security(("bearer" = []))
)]
pub async fn list(
    State(state): State<Shared>,
    Extension(who): Extension<Principal>,
) -> ApiResult<Json<StreamList>> {
    let streams = state
        .db
        .streams()
        .into_iter()
        .filter(|s| who.can_read(&s.name))
        .map(StreamBody::from)
        .collect();
    Ok(Json(StreamList { streams }))
}

/// Delete a stream as a whole (in a logged commit). A later append starts a new stream at 1.
#[utoipa::path(
    delete,
    path = "/v1/streams/{stream}",
    tag = "streams",
    params(StreamPath),
    responses((status = 200, description = "Deleted", body = DeleteResponse), WriteErrors),
    security(("bearer" = []))
)]
pub async fn delete(
    State(state): State<Shared>,
    Extension(who): Extension<Principal>,
    p: Result<Path<StreamPath>, PathRejection>,
) -> ApiResult<Json<DeleteResponse>> {
    let stream = checked(p)?;
    require_write(&who, &stream)?;
    if state.db.stream(&stream).is_none() {
        return Err(stream_not_found(&stream));
    }
    let db = state.db.clone();
    let s = stream.clone();
    let deleted = blocking(move || db.delete_stream(&s)).await??;
    Ok(Json(DeleteResponse { stream, deleted }))
}

/// A stream's retention.
#[utoipa::path(
    get,
    path = "/v1/streams/{stream}/retention",
    tag = "streams",
    params(StreamPath),
    responses((status = 200, description = "The retention", body = RetentionBody), ReadErrors),
    security(("bearer" = []))
)]
pub async fn get_retention(
    State(state): State<Shared>,
    Extension(who): Extension<Principal>,
    p: Result<Path<StreamPath>, PathRejection>,
) -> ApiResult<Json<RetentionBody>> {
    let stream = checked(p)?;
    require_read(&who, &stream)?;
    let info = state
        .db
        .stream(&stream)
        .ok_or_else(|| stream_not_found(&stream))?;
    Ok(Json(info.retention.into()))
}

/// Set a stream's retention (creating it, empty, when missing); the stream is trimmed to it
/// in the same commit, and every later append trims too.
#[utoipa::path(
    put,
    path = "/v1/streams/{stream}/retention",
    tag = "streams",
    params(StreamPath),
    request_body(content = RetentionBody, content_type = "application/json"),
    responses((status = 200, description = "Stored; the stream after trimming", body = StreamBody), WriteErrors),
    security(("bearer" = []))
)]
pub async fn put_retention(
    State(state): State<Shared>,
    Extension(who): Extension<Principal>,
    p: Result<Path<StreamPath>, PathRejection>,
    h: HeaderMap,
    b: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<StreamBody>> {
    let stream = checked(p)?;
    require_write(&who, &stream)?;
    headers::require_json(&h)?;
    let bytes = body(b)?;
    let r: RetentionBody = parse_json(&bytes, "invalid_retention")?;
    let db = state.db.clone();
    let info = blocking(move || {
        db.set_stream_retention(
            &stream,
            amberdb::Retention {
                max_entries: r.max_entries,
                max_age_s: r.max_age_s,
            },
        )
    })
    .await??;
    Ok(Json(info.into()))
}
