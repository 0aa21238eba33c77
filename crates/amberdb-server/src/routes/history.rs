//! History and as-of reads: `GET /v1/collections/{c}/docs/{key}/history`, the `as_of` /
//! `as_of_lsn` forms of `GET .../docs/{key}` and `GET .../docs` (dispatched here from
//! `documents.rs`), and `GET /v1/log`. All read the history window of the engine
//! (`amberdb::history`); a point before it answers 410 `history_lost` with
//! `details.retained_from_lsn`.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::documents::{CollectionPath, DocPath, ListQuery, DEFAULT_PAGE, MAX_PAGE};
use super::{error_responses, path, query, require_read, schema_read, E401, E403, E503};
use crate::auth::Principal;
use crate::blocking::blocking;
use crate::error::{ApiError, ApiResult};
use crate::state::Shared;
use amberdb::history::{At, HistoryOptions, MAX_HISTORY_LIMIT};
use amberdb::schema::Reader;

/// Response header of an as-of read: the LSN the point resolved to.
pub const AS_OF_LSN: HeaderName = HeaderName::from_static("amber-as-of-lsn");
/// Most commits one `/v1/log` page returns.
pub const MAX_LOG_LIMIT: usize = 1000;
/// `/v1/log` page size when `limit` is not given.
pub const DEFAULT_LOG_LIMIT: usize = 100;

/// Errors of history and as-of reads.
pub struct HistoryErrors;
impl utoipa::IntoResponses for HistoryErrors {
    fn responses(
    ) -> std::collections::BTreeMap<String, utoipa::openapi::RefOr<utoipa::openapi::Response>> {
        error_responses(&[
            (400, "Malformed request: bad collection, key, query (both as_of and as_of_lsn, a bad time, a limit out of range, an LSN not committed yet) (codes invalid_*)."),
            E401,
            E403,
            (404, "The document did not exist at that point (code document_not_found)."),
            (406, "A document cannot be returned at the schema version asked for: a migration on the way has no down step (code no_down_migration)."),
            (410, "The point is older than the history window (code history_lost; details.retained_from_lsn says where it starts)."),
            E503,
        ])
    }
}

/// Parses an RFC 3339 time into microseconds since the epoch.
pub fn parse_time(name: &str, s: &str) -> Result<u64, ApiError> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|e| {
            ApiError::bad_request(
                "invalid_query",
                format!("{name}={s:?} is not an RFC 3339 time (like 2026-11-21T02:40:00Z): {e}"),
            )
        })?;
    u64::try_from(t.unix_timestamp_nanos() / 1000)
        .map_err(|_| ApiError::bad_request("invalid_query", format!("{name}={s:?} is before 1970")))
}

/// The point of `as_of` / `as_of_lsn`, `None` when neither is given.
pub fn as_of(as_of: Option<&str>, as_of_lsn: Option<u64>) -> Result<Option<At>, ApiError> {
    match (as_of, as_of_lsn) {
        (Some(_), Some(_)) => Err(ApiError::bad_request(
            "invalid_query",
            "give as_of or as_of_lsn, not both",
        )),
        (Some(t), None) => Ok(Some(At::Time(parse_time("as_of", t)?))),
        (None, Some(n)) => Ok(Some(At::Lsn(n))),
        (None, None) => Ok(None),
    }
}

/// Query of a document's history.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// Versions per page, 1..=1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
    /// Only versions with an LSN below this: pass the previous page's `next`.
    #[param(minimum = 0)]
    pub before_lsn: Option<u64>,
    /// Include each version's value (default true).
    pub values: Option<bool>,
    /// Return each value at this schema version (as `Amber-Accept-Schema`), migrated on
    /// read; 406 when no `down` leads there.
    #[param(minimum = 1)]
    pub schema_version: Option<u32>,
}

/// One version in a history.
#[derive(Debug, Serialize, ToSchema)]
pub struct VersionBody {
    /// Version after this change; for a delete, the version it deleted.
    pub version: u64,
    /// LSN of the commit.
    pub lsn: u64,
    /// Commit time, RFC 3339.
    pub time: String,
    /// Commit time, microseconds since the epoch.
    pub time_us: u64,
    /// create, put, replace, patch, delete, or the commit's reason: ttl, revert, undo,
    /// migration, restore.
    pub op: String,
    /// True for a delete (no value, schema_version or sha256).
    pub deleted: bool,
    /// Schema version of the value as returned (the version asked for, or the collection's
    /// current one).
    pub schema_version: Option<u32>,
    /// Schema version the value is stored at (absent for deletes).
    pub stored_schema_version: Option<u32>,
    /// SHA-256 of the value, hex.
    pub sha256: Option<String>,
    /// Expiry, RFC 3339.
    pub expires_at: Option<String>,
    /// The value (absent with values=false and for deletes).
    #[schema(value_type = Option<serde_json::Value>)]
    pub value: Option<Box<serde_json::value::RawValue>>,
}

/// A page of a document's history, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryResponse {
    /// Newest first.
    pub versions: Vec<VersionBody>,
    /// Pass as before_lsn for the next page; null on the last page.
    pub next: Option<u64>,
    /// Where the history window starts: older versions are no longer kept.
    pub retained_from_lsn: u64,
}

/// The versions of one document in the history window, newest first.
#[utoipa::path(
    get,
    path = "/v1/collections/{collection}/docs/{key}/history",
    tag = "history",
    params(DocPath, HistoryQuery,
        ("Amber-Accept-Schema" = Option<u32>, Header, description = "Return each value at this schema version (as ?schema_version)")),
    responses((status = 200, description = "A page of versions, newest first", body = HistoryResponse), HistoryErrors),
    security(("bearer" = []))
)]
pub async fn history(
    State(state): State<Shared>,
    Extension(who): Extension<Principal>,
    p: Result<Path<DocPath>, PathRejection>,
    q: Result<Query<HistoryQuery>, QueryRejection>,
    h: HeaderMap,
) -> ApiResult<Response> {
    let DocPath { collection, key } = path(p)?;
    let q = query(q)?;
    amberdb::validate_collection(&collection)?;
    amberdb::validate_key(&key)?;
    require_read(&who, &collection)?;
    let limit = q.limit.unwrap_or(DEFAULT_PAGE);
    if limit == 0 || limit > MAX_HISTORY_LIMIT {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("limit must be 1..={MAX_HISTORY_LIMIT}"),
        ));
    }
    let reader = schema_read::reader(&state, &state.db.view(), &collection, &h, q.schema_version)?;
    let opts = HistoryOptions {
        before_lsn: q.before_lsn,
        limit,
        values: q.values.unwrap_or(true),
    };
    let db = state.db.clone();
    let body = blocking(move || -> amberdb::Result<HistoryResponse> {
        let page = db.history(&collection, &key, opts)?;
        let mut versions = Vec::with_capacity(page.versions.len());
        for v in page.versions {
            let stored = v.schema_version;
            let (value, schema_version) = match (v.value, stored) {
                (Some(b), Some(sv)) => {
                    let (migrated, at) = schema_read::present_value(&reader, &key, &b, sv)?;
                    (Some(migrated.unwrap_or_else(|| b.to_vec())), Some(at))
                }
                // Without values, say which version a read of each would return.
                (None, Some(sv)) => (None, Some(reader.target().unwrap_or(sv))),
                (b, None) => (b.map(|b| b.to_vec()), None),
            };
            versions.push(VersionBody {
                version: v.version,
                lsn: v.lsn,
                time: amberdb::format_micros(v.commit_ts),
                time_us: v.commit_ts,
                op: v.op.to_owned(),
                deleted: v.deleted,
                schema_version,
                stored_schema_version: stored,
                sha256: v.sha256.map(hex::encode),
                expires_at: v.expires_at.map(amberdb::format_micros),
                value: value.and_then(|b| {
                    serde_json::value::RawValue::from_string(
                        String::from_utf8_lossy(&b).into_owned(),
                    )
                    .ok()
                }),
            });
        }
        Ok(HistoryResponse {
            versions,
            next: page.next,
            retained_from_lsn: page.retained_from_lsn,
        })
    })
    .await??;
    let mut resp = Json(body).into_response();
    schema_read::vary(resp.headers_mut());
    Ok(resp)
}

/// `GET .../docs/{key}?as_of=...|as_of_lsn=...`: the document as it was right after that
/// commit, with the headers of a normal GET plus `Amber-As-Of-Lsn`.
pub async fn get_doc_as_of(
    state: &Shared,
    collection: String,
    key: String,
    at: At,
    meta: bool,
    reader: Reader,
) -> ApiResult<Response> {
    let db = state.db.clone();
    let (c, k) = (collection.clone(), key.clone());
    let (lsn, doc) = blocking(move || -> amberdb::Result<_> {
        let lsn = db.resolve_at(at)?;
        Ok((lsn, db.get_at(&c, &k, At::Lsn(lsn))?))
    })
    .await??;
    let doc = doc.ok_or_else(|| ApiError::doc_not_found(&collection, &key))?;
    let mut docs = schema_read::present(&reader, vec![doc]).await?;
    let doc = docs
        .pop()
        .ok_or_else(|| ApiError::internal("presented no document"))?;
    let mut resp = super::documents::doc_response(&collection, &doc, meta);
    resp.headers_mut().insert(AS_OF_LSN, HeaderValue::from(lsn));
    Ok(resp)
}

/// `GET .../docs?as_of=...|as_of_lsn=...`: a page of the collection as it was right after
/// that commit.
pub async fn list_docs_as_of(
    state: &Shared,
    collection: String,
    q: ListQuery,
    at: At,
    reader: Reader,
) -> ApiResult<Response> {
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
    let db = state.db.clone();
    let c = collection.clone();
    let (lsn, page) = blocking(move || db.list_at(&c, &opts, at)).await??;
    #[derive(Serialize)]
    struct ListBody {
        documents: Vec<Box<serde_json::value::RawValue>>,
        next: Option<String>,
        as_of_lsn: u64,
    }
    let documents = schema_read::present(&reader, page.docs)
        .await?
        .iter()
        .map(|d| d.envelope_raw(&collection))
        .collect();
    let mut resp = Json(ListBody {
        documents,
        next: page.next,
        as_of_lsn: lsn,
    })
    .into_response();
    resp.headers_mut().insert(AS_OF_LSN, HeaderValue::from(lsn));
    schema_read::vary(resp.headers_mut());
    Ok(resp)
}

/// Query of `/v1/log`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogQuery {
    /// Only commits with an LSN at or after this.
    #[param(minimum = 0)]
    pub from_lsn: Option<u64>,
    /// Only commits with an LSN at or before this.
    #[param(minimum = 0)]
    pub to_lsn: Option<u64>,
    /// Only commits at or after this time (RFC 3339).
    pub from_time: Option<String>,
    /// Only commits at or before this time (RFC 3339).
    pub to_time: Option<String>,
    /// Only commits touching this collection.
    pub collection: Option<String>,
    /// Only commits touching this key.
    pub key: Option<String>,
    /// Commits per page, 1..=1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
}

/// One document a commit touched.
#[derive(Debug, Serialize, ToSchema)]
pub struct LogOpBody {
    /// Collection.
    pub collection: String,
    /// Key.
    pub key: String,
    /// create, put, replace, patch or delete.
    pub op: String,
    /// Version after it (0 for a delete).
    pub version: u64,
    /// The document's previous LSN.
    pub prev_lsn: u64,
}

/// One commit.
#[derive(Debug, Serialize, ToSchema)]
pub struct LogCommitBody {
    /// LSN.
    pub lsn: u64,
    /// Commit time, RFC 3339.
    pub time: String,
    /// Commit time, microseconds.
    pub time_us: u64,
    /// write, revert, undo, restore, ttl or migration.
    pub reason: String,
    /// The LSN a revert, undo or restore refers to (0: none).
    pub target_lsn: u64,
    /// The documents it touched that the token may read.
    pub ops: Vec<LogOpBody>,
}

/// A page of commits.
#[derive(Debug, Serialize, ToSchema)]
pub struct LogResponse {
    /// In LSN order.
    pub commits: Vec<LogCommitBody>,
    /// Pass as from_lsn for the next page; null when the listing is complete.
    pub next_from_lsn: Option<u64>,
    /// Where the history window starts.
    pub retained_from_lsn: u64,
}

/// The commits of the retained log, with time, reason and the documents they touched (what
/// `amberdb log` prints), to pick a point for as-of reads or a revert. A token sees only the
/// documents of collections it may read; commits touching none of them are left out.
#[utoipa::path(
    get,
    path = "/v1/log",
    tag = "history",
    params(LogQuery),
    responses((status = 200, description = "A page of commits", body = LogResponse), HistoryErrors),
    security(("bearer" = []))
)]
pub async fn log(
    State(state): State<Shared>,
    Extension(who): Extension<Principal>,
    q: Result<Query<LogQuery>, QueryRejection>,
) -> ApiResult<Json<LogResponse>> {
    let q = query(q)?;
    if let Some(c) = &q.collection {
        amberdb::validate_collection(c)?;
        require_read(&who, c)?;
    }
    if let Some(k) = &q.key {
        amberdb::validate_key(k)?;
    }
    let limit = q.limit.unwrap_or(DEFAULT_LOG_LIMIT);
    if limit == 0 || limit > MAX_LOG_LIMIT {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("limit must be 1..={MAX_LOG_LIMIT}"),
        ));
    }
    let filter = amberdb::backup::LogFilter {
        from_time: q
            .from_time
            .as_deref()
            .map(|t| parse_time("from_time", t))
            .transpose()?,
        to_time: q
            .to_time
            .as_deref()
            .map(|t| parse_time("to_time", t))
            .transpose()?,
        collection: q.collection,
        key: q.key,
        limit,
        from_lsn: q.from_lsn,
        to_lsn: q.to_lsn,
    };
    let db = state.db.clone();
    let (entries, window) = blocking(move || -> amberdb::Result<_> {
        let window = db.history_window()?;
        let source = amberdb::backup::LogSource::DataDir(db.path().to_owned());
        Ok((amberdb::backup::read_log(&source, &filter)?, window))
    })
    .await??;
    let next_from_lsn = if entries.len() == limit {
        entries.last().map(|e| e.lsn + 1)
    } else {
        None
    };
    let commits = entries
        .into_iter()
        .filter_map(|e| {
            let ops: Vec<LogOpBody> = e
                .ops
                .into_iter()
                .filter(|o| who.can_read(&o.collection))
                .map(|o| LogOpBody {
                    collection: o.collection,
                    key: o.key,
                    op: o.op.to_owned(),
                    version: o.version,
                    prev_lsn: o.prev_lsn,
                })
                .collect();
            (!ops.is_empty()).then(|| LogCommitBody {
                lsn: e.lsn,
                time: e.time,
                time_us: e.time_us,
                reason: e.reason.to_owned(),
                target_lsn: e.target_lsn,
                ops,
            })
        })
        .collect();
    Ok(Json(LogResponse {
        commits,
        next_from_lsn,
        retained_from_lsn: window.retained_from_lsn,
    }))
}

/// Keeps the collection path type referenced for the as-of list.
#[allow(dead_code)]
fn _paths(_: CollectionPath) {}
